"""`consortia record`: confidential records on a local cluster, sealed on this machine.

    record key --home DIR --account NAME [--rewrap ID ...]      register or rotate a key
    record put --home DIR --from NAME --id ID --reader A [--reader B ...]
               --value-file FILE|- [--label L]
    record open --home DIR --id ID (--as NAME | --escrow-key FILE) [--no-verify] [--json]
    record share --home DIR --from NAME --id ID --with ACCOUNT
    record reveal --home DIR --from NAME --id ID

An account's encryption keys live beside its signing key, one key file per chain version:
DIR/accounts/encryption/<account>.v<N>.key (a member's under DIR/MEMBER/accounts/encryption/),
under the demo passphrase. `key` makes a new key pair, registers it (`identity.
set_encryption_key`) and keeps the old files, so records wrapped to an older version still
open; with `--rewrap` it wraps those records' data keys to the new version (`vault.rewrap`).
`put` learns every reader's current key and the regulator's escrow key from the chain (proven
under a certified state root), seals the value here and stores only the sealed record
(`vault.put`). `open` reads the record (proven the same way unless --no-verify) and decrypts it
here with the party's key of the version the record is wrapped to; the regulator opens any
record with the escrow key (`--escrow-key`, e.g. recovered by `consortia escrow recover`).

Must never print, log or send a private key or a passphrase, and never send a plaintext to a
node: only `open` and `reveal` (which discloses it on purpose) ever hold one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from consortia.cli.json_input import read_json_input
from consortia.cli.output import err, out
from consortia.cli.tx_commands import (
    FromOption,
    HomeOption,
    JsonOption,
    NodeOption,
    PassphraseFileOption,
    ask,
    node_client,
    report,
)
from consortia.client import Client, LightClient, Signer
from consortia.client.records import (
    VAULT,
    encryption_key_key,
    open_stored,
    put_arguments,
    reveal_arguments,
    rewrap_arguments,
    seal_for,
    sealed_of,
    share_arguments,
    stored,
)
from consortia.cluster.accounts import account_key, open_signer
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.crypto import Suite
from consortia.crypto import suite as get_suite
from consortia.errors import (
    AccountKeyNotFoundError,
    InvalidArgumentError,
    NotAReaderError,
)
from consortia.execution.contracts import identity_state
from consortia.identity import layout
from consortia.identity.keystore import load_key, new_keypair, seal_key, write_key_file
from consortia.identity.passphrase import obtain_passphrase
from consortia.privacy import ESCROW_PARTY

ENCRYPTION_DIR: Final = "encryption"
VALUE_FILE_BYTES_MAX: Final = 12 * 1024  # the envelope's bound on a value's encoding
WAIT_S: Final = 60.0

record_app = typer.Typer(
    name="record",
    help="Confidential records: sealed here, stored in the vault, opened by their readers.",
    no_args_is_help=True,
)

IdOption = Annotated[str, typer.Option("--id", help="The record's id in the vault.")]
VerifyOption = Annotated[
    bool,
    typer.Option(
        "--verify/--no-verify",
        help="Check keys and records against a header certified by the validators.",
    ),
]


def register(app: typer.Typer) -> None:
    record_app.command("key")(key_command)
    record_app.command("put")(put_command)
    record_app.command("open")(open_command)
    record_app.command("share")(share_command)
    record_app.command("reveal")(reveal_command)
    app.add_typer(record_app, name="record")


def key_command(
    home: HomeOption,
    account: Annotated[str, typer.Option("--account", help="alice, bank-0.treasury, bank-0.")],
    rewrap: Annotated[
        list[str] | None,
        typer.Option("--rewrap", help="A record to wrap to the new key too; repeatable."),
    ] = None,
    node: NodeOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Register a new encryption key for --account (its first, or a rotation)."""
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    chain_suite = get_suite(cluster.suite)
    with _client(cluster, node, verify=True) as client:
        signer = open_signer(cluster.root, account, ask(client.chain), passphrase)
        folder = _key_folder(cluster.root, account)
        current = ask(
            lambda: client.state(
                identity_state.CONTRACT, encryption_key_key(signer.account), verify=True
            )
        )
        found = identity_state.versioned_key(current if isinstance(current, dict) else None, None)
        version = 1 if found is None else found[0] + 1
        private_key, public_key = new_keypair(cluster.suite, "encryption")
        with err.status("Sealing the new key file (Argon2id)…"):
            sealed = seal_key(cluster.suite, "encryption", private_key, passphrase)
        path = folder / f"{signer.account}.v{version}{layout.KEY_SUFFIX}"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_key_file(path, sealed)
        record = _call(
            client,
            signer,
            identity_state.CONTRACT,
            "set_encryption_key",
            {"public_key": public_key.hex()},
        )
        registered = int(record["receipt"]["result"])
        if registered != version:  # another registration came first: name the file truly
            path = path.rename(folder / f"{signer.account}.v{registered}{layout.KEY_SUFFIX}")
        out.print(f"{signer.account}: encryption key version {registered} ({path})")
        if version > 1 and rewrap:
            old = _private_key(cluster.root, account, signer.account, version - 1, passphrase)
            for record_id in rewrap:
                args = _rewrap_args(client, chain_suite, record_id, signer.account, old)
                _call(client, signer, VAULT, "rewrap", args)
                out.print(f"rewrapped {record_id} to version {registered}")


def put_command(
    home: HomeOption,
    sender: FromOption,
    record_id: IdOption,
    reader: Annotated[
        list[str], typer.Option("--reader", help="An account that may read it; repeatable.")
    ],
    value_file: Annotated[
        Path,
        typer.Option(
            "--value-file",
            help="The value as JSON (integers, no floats), in a file only you read, or - for"
            " standard input (never on the command line: others see it there).",
        ),
    ],
    label: Annotated[str, typer.Option("--label", help="What the record is.")] = "record",
    node: NodeOption = None,
    as_json: JsonOption = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Seal a value to --reader accounts and the regulator's escrow, and store it."""
    parsed = _value(value_file)
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    with _client(cluster, node, verify=True) as client:
        signer = open_signer(cluster.root, sender, ask(client.chain), passphrase)
        sealed = ask(
            lambda: seal_for(client, get_suite(cluster.suite), label, parsed, reader, verify=True)
        )
        record = _call(client, signer, VAULT, "put", put_arguments(record_id, sealed, reader))
    if as_json:
        typer.echo(json.dumps({"record": record_id, "tx_hash": record["tx_hash"]}))
        return
    out.print(f"stored record {record_id} for {', '.join(sorted(reader))} and the escrow")
    out.print(f"commitment {sealed.commitment.hex()}")


def open_command(
    home: HomeOption,
    record_id: IdOption,
    party: Annotated[
        str | None, typer.Option("--as", help="The reader opening it: alice, bank-0, ...")
    ] = None,
    escrow_key: Annotated[
        Path | None,
        typer.Option("--escrow-key", help="Open as the regulator with this escrow key file."),
    ] = None,
    verify: VerifyOption = True,
    node: NodeOption = None,
    as_json: JsonOption = False,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Decrypt a record here, as one of its readers or as the regulator's escrow."""
    if (party is None) == (escrow_key is None):
        raise InvalidArgumentError("give either --as NAME or --escrow-key FILE")
    cluster = ClusterHome.open(home)
    chain_suite = get_suite(cluster.suite)
    with _client(cluster, node, verify=verify) as client:
        record = ask(lambda: stored(client, record_id, verify=verify))
        if escrow_key is not None:
            who = ESCROW_PARTY
            secret = obtain_passphrase(passphrase_file, creating=False)
            with err.status("Deriving the key-encryption key (Argon2id)…"):
                private_key = load_key(escrow_key, secret, purpose="encryption").private_key
        else:
            assert party is not None
            who = account_key(cluster.root, party)[0]
            version = _wrapped_version(record, who)
            passphrase = demo_passphrase(cluster, passphrase_file)
            private_key = _private_key(cluster.root, party, who, version, passphrase)
        opened = open_stored(client, chain_suite, record_id, who, private_key, verify=verify)
    if as_json:
        typer.echo(json.dumps({"record": record_id, "value": opened.value, "verified": verify}))
        return
    out.print(f"record {record_id} ({record['label']}), opened as {who}")
    out.print(json.dumps(opened.value, indent=2, sort_keys=True), markup=False)
    if verify:
        out.print("verified: true")


def share_command(
    home: HomeOption,
    sender: FromOption,
    record_id: IdOption,
    with_account: Annotated[str, typer.Option("--with", help="The account to add as a reader.")],
    node: NodeOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Let one more account read a record you read (vault.share)."""
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    with _client(cluster, node, verify=True) as client:
        signer = open_signer(cluster.root, sender, ask(client.chain), passphrase)
        record = ask(lambda: stored(client, record_id, verify=True))
        version = _wrapped_version(record, signer.account)
        private_key = _private_key(cluster.root, sender, signer.account, version, passphrase)
        args = ask(
            lambda: share_arguments(
                client,
                get_suite(cluster.suite),
                record_id,
                signer.account,
                private_key,
                new_reader=with_account,
            )
        )
        _call(client, signer, VAULT, "share", args)
    out.print(f"{with_account} now reads record {record_id}")


def reveal_command(
    home: HomeOption,
    sender: FromOption,
    record_id: IdOption,
    node: NodeOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Disclose a record's plaintext on the chain (a dispute); the vault checks it."""
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    chain_suite = get_suite(cluster.suite)
    with _client(cluster, node, verify=True) as client:
        signer = open_signer(cluster.root, sender, ask(client.chain), passphrase)
        record = ask(lambda: stored(client, record_id, verify=True))
        version = _wrapped_version(record, signer.account)
        private_key = _private_key(cluster.root, sender, signer.account, version, passphrase)
        opened = open_stored(client, chain_suite, record_id, signer.account, private_key)
        _call(client, signer, VAULT, "reveal", reveal_arguments(record_id, opened))
    out.print(f"record {record_id} disclosed on the chain; its commitment checked")


# ---------------------------------------------------------------------- helpers


def _client(cluster: ClusterHome, node: int | None, *, verify: bool) -> Client:
    client = node_client(cluster, node)
    if verify:
        client.light = LightClient.from_genesis_json(
            (cluster.root / layout.GENESIS_FILE).read_bytes()
        )
    return client


def _call(
    client: Client, signer: Signer, contract: str, method: str, args: dict[str, Any]
) -> dict[str, Any]:
    record = ask(lambda: client.call(signer, contract, method, args, wait=True, timeout_s=WAIT_S))
    report(record, quiet=True)  # a failed transaction: one line, exit 2
    return record


def _rewrap_args(
    client: Client, chain_suite: Suite, record_id: str, account: str, old_key: bytes
) -> dict[str, Any]:
    return ask(lambda: rewrap_arguments(client, chain_suite, record_id, account, old_key))


def _key_folder(root: Path, name: str) -> Path:
    """Where the encryption key files of the account `name` stand for live."""
    return account_key(root, name)[1].parent / ENCRYPTION_DIR


def _private_key(root: Path, name: str, account: str, version: int, passphrase: str) -> bytes:
    path = _key_folder(root, name) / f"{account}.v{version}{layout.KEY_SUFFIX}"
    if not path.exists():
        raise AccountKeyNotFoundError(
            f"no encryption key version {version} of {account} in {path.parent}"
            " (consortia record key registers one)"
        )
    with err.status("Deriving the key-encryption key (Argon2id)…"):
        return load_key(path, passphrase, purpose="encryption").private_key


def _wrapped_version(record: dict[str, Any], party: str) -> int:
    """The key version the record's newest wrap for `party` is for."""
    for key in sealed_of(record, party).keys:
        if key.party == party:
            return key.key_version
    raise NotAReaderError(f"{party} is not a reader of this record")


def _value(value_file: Path) -> Any:
    """The JSON value in `value_file` (`-`: standard input), bounded; no floats."""
    return read_json_input(
        value_file,
        size_max=VALUE_FILE_BYTES_MAX,
        what="the value",
        option="--value-file",
        parse_float=_no_float,
    )


def _no_float(text: str) -> Any:
    raise InvalidArgumentError(
        f"the value holds the number {text}: amounts are integers in minor units, never floats"
    )
