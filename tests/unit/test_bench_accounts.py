"""Benchmark accounts: keys derived from one sealed master key, the same on every opening,
valid for either suite, and matching what the genesis funds."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.crypto import suite as get_suite
from consortia.errors import InvalidArgumentError, WrongPassphraseError
from consortia.identity.bench_accounts import (
    BENCH_ACCOUNT_BALANCE,
    BENCH_ACCOUNTS_MAX,
    account_name,
    bench_account_count,
    create_bench_accounts,
    open_bench_accounts,
)
from tests.identity_helpers import FAST

PASSPHRASE = "benchmark passphrase"


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_derived_keys_match_the_genesis_entries(tmp_path: Path, suite_name: str) -> None:
    entries = create_bench_accounts(
        tmp_path,
        suite_name=suite_name,
        count=7,
        sponsors=["bank-0", "bank-1"],
        passphrase=PASSPHRASE,
        cost=FAST,
    )
    assert [entry.id for entry in entries] == [account_name(i) for i in range(7)]
    assert [entry.sponsor for entry in entries[:3]] == ["bank-0", "bank-1", "bank-0"]
    assert {entry.balance for entry in entries} == {BENCH_ACCOUNT_BALANCE}
    assert bench_account_count(tmp_path) == 7
    assert (tmp_path / "bench" / "master.key").stat().st_mode & 0o777 == 0o600
    opened = open_bench_accounts(tmp_path, PASSPHRASE)
    assert opened is not None and opened.count == 7
    chain_suite = get_suite(suite_name)
    for index, entry in enumerate(entries):
        assert chain_suite.public_key(opened.private_key(index)).hex() == entry.public_key
    assert len({entry.public_key for entry in entries}) == 7
    assert "master" not in repr(opened) and opened.master_key().hex() not in repr(opened)
    with pytest.raises(WrongPassphraseError):
        open_bench_accounts(tmp_path, "another passphrase")


def test_counts_are_bounded_and_a_folder_without_them_has_none(tmp_path: Path) -> None:
    assert bench_account_count(tmp_path) == 0
    assert open_bench_accounts(tmp_path, PASSPHRASE) is None
    for count in (0, BENCH_ACCOUNTS_MAX + 1):
        with pytest.raises(InvalidArgumentError):
            create_bench_accounts(
                tmp_path, suite_name="intl", count=count, sponsors=["b"], passphrase=PASSPHRASE
            )
