"""The escrow key held k of n: any k shares recover it, fewer do not, and duplicated, mixed
or altered shares are refused with their own codes; share files under officers' passphrases;
the recovery procedure of docs/privacy.md end to end."""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

import msgspec
import pytest

from consortia.crypto import SUITE_NAMES, Suite, suite
from consortia.errors import (
    AlreadyExistsError,
    CryptoError,
    EscrowRecoveryFailedError,
    EscrowShareDuplicateError,
    EscrowShareInvalidError,
    EscrowSharesMixedError,
    EscrowSharesTooFewError,
    InvalidArgumentError,
    KeyFileError,
    WrongPassphraseError,
)
from consortia.identity.keystore import Argon2Cost
from consortia.privacy import (
    ESCROW_PARTY,
    Reader,
    Share,
    key_id,
    load_share_file,
    open_sealed,
    open_share,
    recover_escrow,
    seal,
    seal_share,
    split_escrow,
    write_share_file,
)

# Argon2id at its minimum, so the share file tests run quickly; files record their own cost.
CHEAP = Argon2Cost(memory_kib=8, iterations=1, lanes=1)
PASSPHRASES = [f"officer {i} passphrase, long enough" for i in range(1, 6)]


@pytest.fixture(params=SUITE_NAMES)
def chain_suite(request: pytest.FixtureRequest) -> Suite:
    return suite(str(request.param))


def _split(s: Suite, k: int = 3, n: int = 5) -> tuple[bytes, bytes, list[Share]]:
    private, public = s.generate_encryption_keypair()
    return private, public, split_escrow(s, private, k, n)


def _replace(original: Share, **changes: object) -> Share:
    return msgspec.structs.replace(original, **changes)


def test_any_k_of_n_recover(chain_suite: Suite) -> None:
    private, public, shares = _split(chain_suite)
    assert [share.index for share in shares] == [1, 2, 3, 4, 5]
    assert all(share.escrow_public_key == public for share in shares)
    assert all(share.key_id == key_id(chain_suite, public) for share in shares)
    for chosen in itertools.combinations(shares, 3):
        assert recover_escrow(chain_suite, list(chosen)) == private
        assert recover_escrow(chain_suite, list(reversed(chosen))) == private
    assert recover_escrow(chain_suite, shares) == private  # more than k is fine


def test_k_minus_one_shares_do_not_recover(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    for chosen in itertools.combinations(shares, 2):
        with pytest.raises(EscrowSharesTooFewError) as refused:
            recover_escrow(chain_suite, list(chosen))
        assert refused.value.code == "escrow_shares_too_few"
        assert "needs 3 of 5" in refused.value.message
    with pytest.raises(EscrowSharesTooFewError):
        recover_escrow(chain_suite, [])


def test_k_minus_one_shares_relabelled_as_a_lower_threshold_do_not_recover(
    chain_suite: Suite,
) -> None:
    """Officers cannot get around k by editing it in their shares: k is bound to the encrypted
    key, and k - 1 points of a degree k - 1 polynomial give a wrong recovery key."""
    _private, _public, shares = _split(chain_suite)
    edited = [_replace(share, k=2) for share in shares[:2]]
    with pytest.raises(EscrowRecoveryFailedError):
        recover_escrow(chain_suite, edited)


def test_duplicate_shares_are_refused(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    with pytest.raises(EscrowShareDuplicateError) as refused:
        recover_escrow(chain_suite, [shares[0], shares[1], shares[1]])
    assert refused.value.code == "escrow_share_duplicate"
    with pytest.raises(EscrowShareDuplicateError):
        recover_escrow(chain_suite, [shares[0], shares[0], shares[0], shares[1]])


def test_shares_of_two_splits_or_two_keys_are_refused(chain_suite: Suite) -> None:
    private, _public, first = _split(chain_suite)
    second = split_escrow(chain_suite, private, 3, 5)  # the same key split again
    with pytest.raises(EscrowSharesMixedError) as refused:
        recover_escrow(chain_suite, [first[0], first[1], second[2]])
    assert refused.value.code == "escrow_shares_mixed"
    _other_private, _other_public, other = _split(chain_suite)
    with pytest.raises(EscrowSharesMixedError):
        recover_escrow(chain_suite, [first[0], other[1], first[2]])
    other_suite = suite("gm" if chain_suite.name == "intl" else "intl")
    with pytest.raises(EscrowSharesMixedError):
        recover_escrow(other_suite, first[:3])


def test_an_altered_share_value_is_named(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    for byte in range(16):
        value = bytearray(shares[1].share)
        value[byte] ^= 0x01
        altered = _replace(shares[1], share=bytes(value))
        with pytest.raises(EscrowShareInvalidError, match="share 2 was altered") as refused:
            recover_escrow(chain_suite, [shares[0], altered, shares[2]])
        assert refused.value.code == "escrow_share_invalid"


def test_an_altered_public_part_is_refused(chain_suite: Suite) -> None:
    _private, public, shares = _split(chain_suite)
    flipped = bytearray(shares[2].encrypted_key)
    flipped[-1] ^= 0x01
    digests = list(shares[2].share_digests)
    digests[0] = bytes(len(digests[0]))
    other_public = chain_suite.generate_encryption_keypair()[1]
    mixed: list[Share] = [
        _replace(shares[2], encrypted_key=bytes(flipped)),
        _replace(shares[2], share_digests=digests),
        _replace(shares[2], n=6, share_digests=[*shares[2].share_digests, bytes(32)]),
        _replace(shares[2], k=4),
    ]
    for altered in mixed:
        with pytest.raises(EscrowSharesMixedError):
            recover_escrow(chain_suite, [shares[0], shares[1], altered])
    invalid: list[Share] = [
        _replace(shares[2], key_id=bytes(32)),
        _replace(shares[2], escrow_public_key=other_public),
        _replace(shares[2], index=0),
        _replace(shares[2], index=6),
        _replace(shares[2], share=shares[2].share[:-1]),
        _replace(shares[2], v=2),
        _replace(shares[2], k=1),
    ]
    for altered in invalid:
        with pytest.raises(EscrowShareInvalidError):
            recover_escrow(chain_suite, [shares[0], shares[1], altered])
    assert public == shares[0].escrow_public_key


def test_an_encrypted_key_altered_in_every_share_fails_recovery(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    flipped = bytearray(shares[0].encrypted_key)
    flipped[20] ^= 0x01
    altered = [_replace(share, encrypted_key=bytes(flipped)) for share in shares[:3]]
    with pytest.raises(EscrowRecoveryFailedError) as refused:
        recover_escrow(chain_suite, altered)
    assert refused.value.code == "escrow_recovery_failed"


@pytest.mark.parametrize(("k", "n"), [(1, 3), (0, 3), (4, 3), (2, 33), (-1, -1)])
def test_split_refuses_bad_thresholds(chain_suite: Suite, k: int, n: int) -> None:
    private, _public = chain_suite.generate_encryption_keypair()
    with pytest.raises(InvalidArgumentError):
        split_escrow(chain_suite, private, k, n)


def test_split_refuses_a_malformed_private_key(chain_suite: Suite) -> None:
    with pytest.raises(CryptoError):
        split_escrow(chain_suite, b"\x01" * 31, 2, 3)


def test_the_largest_split_recovers(chain_suite: Suite) -> None:
    private, _public, shares = _split(chain_suite, 32, 32)
    assert recover_escrow(chain_suite, shares) == private
    with pytest.raises(EscrowSharesTooFewError):
        recover_escrow(chain_suite, shares[:31])


def test_share_repr_hides_the_share(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    text = repr(shares[0])
    assert shares[0].share.hex() not in text
    assert "share 1 of 5 (k=3)" in text


# --- share files -----------------------------------------------------------------------------


def test_share_files_round_trip_under_each_officers_passphrase(
    chain_suite: Suite, tmp_path: Path
) -> None:
    _private, _public, shares = _split(chain_suite)
    path = tmp_path / "share-1.json"
    write_share_file(path, shares[0], PASSPHRASES[0], cost=CHEAP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_share_file(path, PASSPHRASES[0]) == shares[0]
    data = path.read_bytes()
    assert shares[0].share.hex().encode() not in data
    assert shares[0].share not in data
    with pytest.raises(WrongPassphraseError):
        load_share_file(path, PASSPHRASES[1])
    with pytest.raises(AlreadyExistsError):
        write_share_file(path, shares[0], PASSPHRASES[0], cost=CHEAP)


def test_altered_share_files_are_refused(chain_suite: Suite) -> None:
    _private, _public, shares = _split(chain_suite)
    data = seal_share(shares[0], PASSPHRASES[0], cost=CHEAP)
    document = msgspec.json.decode(data)
    ciphertext = bytearray(bytes.fromhex(document["ciphertext"]))
    ciphertext[-1] ^= 0x01
    edits = [
        {**document, "ciphertext": ciphertext.hex()},
        {**document, "header": {**document["header"], "index": 2}},
        {**document, "header": {**document["header"], "k": 2}},
        {**document, "header": {**document["header"], "key_id": "00" * 32}},
    ]
    for edited in edits:
        with pytest.raises(KeyFileError):
            open_share(msgspec.json.encode(edited), PASSPHRASES[0])
    for garbage in (b"", b"{}", data[:-20], data.replace(b'"index"', b'"index2"')):
        with pytest.raises(KeyFileError):
            open_share(garbage, PASSPHRASES[0])
    duplicated_key = data.replace(b"{\n", b'{\n  "ciphertext": "00",\n', 1)
    with pytest.raises(KeyFileError):
        open_share(duplicated_key, PASSPHRASES[0])


def test_recovery_procedure_end_to_end(chain_suite: Suite, tmp_path: Path) -> None:
    """docs/privacy.md, "Recovering the escrow key": split at ceremony, one file per officer;
    later three officers open their own files and the key opens a record sealed to escrow."""
    escrow_private, escrow_public = chain_suite.generate_encryption_keypair()
    shares = split_escrow(chain_suite, escrow_private, 3, 5)
    for share, passphrase in zip(shares, PASSPHRASES, strict=True):
        write_share_file(
            tmp_path / f"escrow-share-{share.index}.json", share, passphrase, cost=CHEAP
        )
    del escrow_private  # the ceremony keeps no copy
    bank_private, bank_public = chain_suite.generate_encryption_keypair()
    sealed = seal(
        chain_suite,
        "kyc/record",
        {"customer": "firm-7", "risk": "high"},
        [Reader("bank-a", 1, bank_public)],
        Reader(ESCROW_PARTY, 1, escrow_public),
    )
    present = [
        load_share_file(tmp_path / f"escrow-share-{index}.json", PASSPHRASES[index - 1])
        for index in (2, 4, 5)
    ]
    recovered = recover_escrow(chain_suite, present)
    assert chain_suite.encryption_public_key(recovered) == escrow_public
    opened = open_sealed(chain_suite, sealed, ESCROW_PARTY, recovered)
    assert opened.value == {"customer": "firm-7", "risk": "high"}
    assert open_sealed(chain_suite, sealed, "bank-a", bank_private).value == opened.value
