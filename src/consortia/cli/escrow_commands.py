"""`consortia escrow`: the regulator's escrow key held k of n by its officers.

    escrow split KEYFILE --threshold K --officers N --out DIR
                 [--passphrase-file F] [--officer-passphrases PDIR]
    escrow recover SHARE... --out KEYFILE [--share-passphrases PDIR] [--passphrase-file F]

`split` opens the escrow key file (purpose `encryption`, made by `consortia keys generate
--purpose encryption`), splits it k of n (`consortia.privacy.escrow.split_escrow`) and writes
DIR/officer-<i>.share for i = 1..N, each sealed under officer i's own passphrase: typed by the
officer at the terminal, or read from PDIR/officer-<i>.passphrase (mode 0600) on a ceremony
machine that scripts it. `recover` opens K or more share files (each under its officer's
passphrase: typed, or PDIR/<share file's stem>.passphrase), recovers the escrow key and writes
it as a new key file under a new passphrase, never over an existing file. docs/privacy.md
gives the whole ceremony and the recovery procedure.

Must never print, log or put on a command line a passphrase, a share or a private key: only
file names, indices, k, n and the key id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consortia.cli.output import err, out
from consortia.crypto import suite as get_suite
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity.keystore import load_key, read_key_header, seal_key, write_key_file
from consortia.identity.passphrase import (
    check_new_passphrase,
    obtain_passphrase,
    prompt_passphrase,
    read_passphrase_file,
)
from consortia.privacy.escrow import (
    OFFICERS_MAX,
    THRESHOLD_MIN,
    Share,
    key_id,
    load_share_file,
    recover_escrow,
    split_escrow,
    write_share_file,
)

escrow_app = typer.Typer(
    name="escrow",
    help="Split the regulator's escrow key among its officers, k of n, and recover it.",
    no_args_is_help=True,
)

PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="The escrow key file's passphrase, mode 0600 (default: $CONSORTIA_PASSPHRASE,"
        " else ask).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    escrow_app.command("split")(split_command)
    escrow_app.command("recover")(recover_command)
    app.add_typer(escrow_app, name="escrow")


def split_command(
    key_file: Annotated[Path, typer.Argument(help="The escrow key file (purpose encryption).")],
    threshold: Annotated[
        int, typer.Option("--threshold", "-k", help="Shares needed to recover it (k).")
    ],
    officers: Annotated[int, typer.Option("--officers", "-n", help="Shares to make (n).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for officer-<i>.share files.")],
    passphrase_file: PassphraseFileOption = None,
    officer_passphrases: Annotated[
        Path | None,
        typer.Option(
            "--officer-passphrases",
            help="Folder of officer-<i>.passphrase files (mode 0600); default: each officer"
            " types theirs.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Split an escrow key k of n: one passphrase-sealed share file per officer."""
    if not THRESHOLD_MIN <= threshold <= officers <= OFFICERS_MAX:
        raise InvalidArgumentError(
            f"need {THRESHOLD_MIN} <= --threshold <= --officers <= {OFFICERS_MAX},"
            f" got {threshold} of {officers}"
        )
    header = read_key_header(key_file)
    if header.purpose != "encryption":
        raise InvalidArgumentError(
            f"{key_file} holds a key of purpose {header.purpose!r}; the escrow key is an"
            " encryption key (consortia keys generate --purpose encryption)"
        )
    paths = [out_dir / f"officer-{i}.share" for i in range(1, officers + 1)]
    taken = [path for path in paths if path.exists() or path.is_symlink()]
    if taken:
        raise AlreadyExistsError(f"{taken[0]} already exists; refusing to overwrite shares")
    passphrase = obtain_passphrase(passphrase_file, creating=False)
    with err.status("Deriving the key-encryption key (Argon2id)…"):
        unlocked = load_key(key_file, passphrase, purpose="encryption")
    chain_suite = get_suite(header.suite)
    shares = split_escrow(chain_suite, unlocked.private_key, threshold, officers)
    officer_passphrases_ = [
        _officer_passphrase(officer_passphrases, f"officer-{share.index}", creating=True)
        for share in shares
    ]
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with err.status(f"Sealing {officers} shares (Argon2id each)…"):
        for share, path, secret in zip(shares, paths, officer_passphrases_, strict=True):
            write_share_file(path, share, secret)
    out.print(f"escrow key {key_id(chain_suite, unlocked.header.public_key_bytes).hex()}")
    out.print(f"split {threshold} of {officers}: any {threshold} officers recover it")
    for path in paths:
        out.print(f"wrote {path} (mode 0600): hand it to its officer alone")


def recover_command(
    share_files: Annotated[
        list[Path], typer.Argument(help="At least k share files, from k different officers.")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="The recovered key file to create.")],
    share_passphrases: Annotated[
        Path | None,
        typer.Option(
            "--share-passphrases",
            help="Folder of <share stem>.passphrase files (mode 0600); default: each officer"
            " types theirs.",
            show_default=False,
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="The new key file's passphrase, mode 0600 (default: $CONSORTIA_PASSPHRASE,"
            " else ask).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recover the escrow key from k share files into a new key file."""
    if out_file.exists() or out_file.is_symlink():
        raise AlreadyExistsError(f"{out_file} already exists; refusing to overwrite it")
    shares: list[Share] = []
    for path in share_files:
        secret = _officer_passphrase(share_passphrases, path.stem, creating=False)
        with err.status(f"Opening {path} (Argon2id)…"):
            shares.append(load_share_file(path, secret))
    chain_suite = get_suite(shares[0].suite)
    private_key = recover_escrow(chain_suite, shares)
    passphrase = obtain_passphrase(passphrase_file, creating=True, label="New key passphrase")
    with err.status("Deriving the key-encryption key (Argon2id)…"):
        sealed = seal_key(chain_suite.name, "encryption", private_key, passphrase)
    write_key_file(out_file, sealed)
    public_key = chain_suite.encryption_public_key(private_key)
    out.print(f"recovered escrow key {key_id(chain_suite, public_key).hex()}")
    out.print(f"wrote {out_file} (mode 0600); rotate the escrow key once the records are read")


def _officer_passphrase(folder: Path | None, name: str, *, creating: bool) -> str:
    if folder is None:
        secret = prompt_passphrase(creating=creating, label=f"Passphrase of {name}")
    else:
        secret = read_passphrase_file(folder / f"{name}.passphrase")
    if creating:
        check_new_passphrase(secret)
    return secret
