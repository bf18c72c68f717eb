"""Benchmark accounts of a local demo network: many funded accounts whose keys all derive from
one master key, so that `consortia bench` can sign for thousands of senders without a key
file (and an Argon2 derivation) per account.

`consortia cluster up --accounts A` makes, in a new cluster only:

    DIR/bench/master.key      an account key file sealed under the first member's passphrase
                              (in demo custody: the one passphrase of the cluster)
    DIR/bench/accounts.json   public: the format, how many accounts, their name prefix, their
                              balance

and the genesis funds `bench-000000` ... `bench-(A-1)` (sponsored by the members in turn) with
BENCH_ACCOUNT_BALANCE each. Account I's private key is the chain suite's hash of a domain tag,
the master private key and I (with a counter, in the vanishing case that a hash is not a valid
key of the suite). Whoever opens the master key can sign for every benchmark account: this is
demo custody, for a local benchmark network only, never for accounts that hold anything real.

This module must never print, log or write unencrypted a private key: the master key is
sealed like every other key, and derived keys live only in the memory of whoever derived them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from consortia.crypto import suite as get_suite
from consortia.errors import CryptoError, InvalidArgumentError, KeyFileError
from consortia.identity.files import make_private_dir, write_private_file, write_public_file
from consortia.identity.keystore import DEFAULT_ARGON2, Argon2Cost, load_key, new_keypair, seal_key
from consortia.types.genesis import GenesisAccount
from consortia.types.primitives import CURRENCY_DEFAULT

BENCH_DIR: Final = "bench"
MASTER_KEY_FILE: Final = "bench/master.key"
ACCOUNTS_FILE: Final = "bench/accounts.json"
FORMAT: Final = "consortia-bench-accounts v1"
PREFIX: Final = "bench-"
# The genesis holds at most GENESIS_ACCOUNTS_MAX accounts in all; 500,000 benchmark accounts
# leave room for the rest and cover the scaling figure (300,000 against 10,000).
BENCH_ACCOUNTS_MAX: Final = 500_000
BENCH_ACCOUNT_BALANCE: Final = 100_000_000  # 1,000,000.00 CNY in fen, as a demo account
_DOMAIN: Final = b"consortia/bench-account-key/v1\x00"
# Roles in the receivable workload, fixed by account number: of every ROLE_CYCLE accounts the
# first is a core enterprise, the second a bank, the rest suppliers. The genesis funds them
# alike (the receivable contract checks no role: a role is who signs which step).
ROLE_CORE: Final = "core_enterprise"
ROLE_BANK: Final = "bank"
ROLE_SUPPLIER: Final = "supplier"
ROLE_CYCLE: Final = 10


def account_name(index: int) -> str:
    return f"{PREFIX}{index:06d}"


def bench_role(index: int) -> str:
    """Benchmark account `index`'s role in the receivable workload (see ROLE_CYCLE)."""
    position = index % ROLE_CYCLE
    return ROLE_CORE if position == 0 else ROLE_BANK if position == 1 else ROLE_SUPPLIER


class BenchAccountsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    count: int
    prefix: str
    balance: int
    currency: str = CURRENCY_DEFAULT


def derive_private_key(suite_name: str, master: bytes, index: int) -> bytes:
    """Benchmark account `index`'s private key (see the module docstring)."""
    chain_suite = get_suite(suite_name)
    for counter in range(256):
        candidate = chain_suite.hash(
            _DOMAIN + master + index.to_bytes(8, "big") + counter.to_bytes(1, "big")
        )
        try:
            chain_suite.signing_key(candidate)
        except CryptoError:
            continue
        return candidate
    raise AssertionError("no valid key among 256 hashes")  # pragma: no cover - never happens


def check_count(count: int) -> None:
    if not 1 <= count <= BENCH_ACCOUNTS_MAX:
        raise InvalidArgumentError(f"--accounts must be 1 to {BENCH_ACCOUNTS_MAX}, got {count}")


def create_bench_accounts(
    root: Path,
    *,
    suite_name: str,
    count: int,
    sponsors: Sequence[str],
    passphrase: str,
    cost: Argon2Cost = DEFAULT_ARGON2,
) -> list[GenesisAccount]:
    """Write DIR/bench (the sealed master key and accounts.json) and return the genesis
    entries of the `count` benchmark accounts, sponsored by `sponsors` in turn."""
    check_count(count)
    assert sponsors, "benchmark accounts need a sponsoring member"
    make_private_dir(root / BENCH_DIR)
    master, _public = new_keypair(suite_name, "account")
    write_private_file(
        root / MASTER_KEY_FILE, seal_key(suite_name, "account", master, passphrase, cost=cost)
    )
    record = BenchAccountsFile(FORMAT, count, PREFIX, BENCH_ACCOUNT_BALANCE)
    write_public_file(root / ACCOUNTS_FILE, msgspec.json.encode(record) + b"\n")
    chain_suite = get_suite(suite_name)
    return [
        GenesisAccount(
            id=account_name(index),
            sponsor=sponsors[index % len(sponsors)],
            public_key=chain_suite.public_key(derive_private_key(suite_name, master, index)).hex(),
            currency=CURRENCY_DEFAULT,
            balance=BENCH_ACCOUNT_BALANCE,
        )
        for index in range(count)
    ]


def bench_account_count(root: Path) -> int:
    """How many benchmark accounts the cluster in `root` has (0 when it has none)."""
    path = root / ACCOUNTS_FILE
    if not path.exists():
        return 0
    return _read_record(path).count


def _read_record(path: Path) -> BenchAccountsFile:
    try:
        record = msgspec.json.decode(path.read_bytes(), type=BenchAccountsFile)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
        raise KeyFileError(f"{path}: not a benchmark accounts file ({error})") from None
    in_range = 1 <= record.count <= BENCH_ACCOUNTS_MAX
    if record.format != FORMAT or record.prefix != PREFIX or not in_range:
        raise KeyFileError(f"{path}: not a {FORMAT} file")
    return record


@dataclass(frozen=True, slots=True, repr=False)
class BenchAccounts:
    """The opened benchmark accounts of a cluster: their count and the master key."""

    suite: str
    count: int
    _master: bytes

    def __repr__(self) -> str:
        return f"<{self.count} benchmark accounts>"

    def master_key(self) -> bytes:
        """The master private key, for the benchmark's own client processes to derive from."""
        return self._master

    def private_key(self, index: int) -> bytes:
        assert 0 <= index < self.count
        return derive_private_key(self.suite, self._master, index)

    def keys(self, indices: Sequence[int]) -> Iterator[tuple[str, bytes]]:
        """(account id, private key) for each of `indices`."""
        for index in indices:
            yield account_name(index), self.private_key(index)


def open_bench_accounts(root: Path, passphrase: str) -> BenchAccounts | None:
    """The benchmark accounts of the cluster in `root`, their master key opened with
    `passphrase`; None when it has none."""
    path = root / ACCOUNTS_FILE
    if not path.exists():
        return None
    record = _read_record(path)
    key = load_key(root / MASTER_KEY_FILE, passphrase, purpose="account")
    return BenchAccounts(key.header.suite, record.count, key.private_key)
