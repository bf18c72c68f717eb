"""Sealed records on both suites: who can open them, what tampering is refused, what the
on-chain text reveals, the strict decoder, commitments and key rotation."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import SUITE_NAMES, Suite, suite
from consortia.errors import (
    CiphertextRejectedError,
    CommitmentMismatchError,
    CryptoError,
    DuplicateReaderError,
    InvalidReaderError,
    InvalidRecordLabelError,
    InvalidRecordValueError,
    MalformedSealedRecordError,
    NotAReaderError,
    TooManyReadersError,
    UnwrapFailedError,
)
from consortia.privacy import (
    ESCROW_PARTY,
    READERS_MAX,
    SEALED_BYTES_MAX,
    Reader,
    Sealed,
    Wrapped,
    commitment_of,
    decode_sealed,
    encode_sealed,
    envelope,
    open_sealed,
    rewrap,
    seal,
    verify_opening,
    wrap_context,
)
from consortia.types.encoding import encode

LABEL = "receivable/terms"
MARKER = "PLANTED-MARKER-7c1e"
VALUE: dict[str, Any] = {
    "price": 1_250_000,
    "discount_bps": 275,
    "goods": f"steel coil {MARKER}",
    "lines": [{"sku": "A-1", "qty": 3}, None, True],
}


class Party:
    def __init__(self, s: Suite, name: str, version: int = 1) -> None:
        self.name = name
        self.private, self.public = s.generate_encryption_keypair()
        self.reader = Reader(name, version, self.public)


class World:
    def __init__(self, name: str) -> None:
        self.suite = suite(name)
        self.buyer = Party(self.suite, "buyer")
        self.supplier = Party(self.suite, "supplier")
        self.escrow = Party(self.suite, ESCROW_PARTY)
        self.outsider = Party(self.suite, "outsider")

    def seal(self, value: Any = VALUE, label: str = LABEL) -> Sealed:
        return seal(
            self.suite, label, value, [self.buyer.reader, self.supplier.reader], self.escrow.reader
        )


@pytest.fixture(params=SUITE_NAMES)
def world(request: pytest.FixtureRequest) -> World:
    return World(str(request.param))


def _replace(sealed: Sealed, **changes: Any) -> Sealed:
    return msgspec.structs.replace(sealed, **changes)


def _flip(data: bytes, index: int) -> bytes:
    altered = bytearray(data)
    altered[index] ^= 0x01
    return bytes(altered)


# --- who can open ----------------------------------------------------------------------------


def test_readers_and_the_escrow_open_the_value(world: World) -> None:
    sealed = world.seal()
    for party in (world.buyer, world.supplier, world.escrow):
        opened = open_sealed(world.suite, sealed, party.name, party.private)
        assert opened.value == VALUE
        assert verify_opening(world.suite, sealed, LABEL, opened.salt, opened.value)
    assert [key.party for key in sealed.keys] == sorted(["buyer", "supplier", ESCROW_PARTY])


def test_the_escrow_is_a_reader_even_with_no_other_reader(world: World) -> None:
    sealed = seal(world.suite, LABEL, VALUE, [], world.escrow.reader)
    assert [key.party for key in sealed.keys] == [ESCROW_PARTY]
    assert open_sealed(world.suite, sealed, ESCROW_PARTY, world.escrow.private).value == VALUE


def test_a_non_reader_cannot_open(world: World) -> None:
    sealed = world.seal()
    with pytest.raises(NotAReaderError) as refused:
        open_sealed(world.suite, sealed, world.outsider.name, world.outsider.private)
    assert refused.value.code == "not_a_reader"
    # claiming a reader's name with one's own key does not help
    for party in ("buyer", ESCROW_PARTY):
        with pytest.raises(UnwrapFailedError) as refused_unwrap:
            open_sealed(world.suite, sealed, party, world.outsider.private)
        assert refused_unwrap.value.code == "unwrap_failed"
    # nor does a reader's key under another reader's name
    with pytest.raises(UnwrapFailedError):
        open_sealed(world.suite, sealed, "supplier", world.buyer.private)


def test_sealing_is_randomised(world: World) -> None:
    first, second = world.seal(), world.seal()
    assert first.commitment != second.commitment  # fresh salt
    assert first.ciphertext != second.ciphertext
    assert {key.wrapped for key in first.keys}.isdisjoint(key.wrapped for key in second.keys)


def test_plaintext_never_appears_in_the_encoding(world: World) -> None:
    sealed = world.seal()
    text = encode_sealed(sealed)
    raw = bytes.fromhex(text)
    opened = open_sealed(world.suite, sealed, "buyer", world.buyer.private)
    for needle in (MARKER.encode(), b"steel coil", b"discount_bps", (1_250_000).to_bytes(4, "big")):
        assert needle not in raw
        assert needle.hex() not in text
    assert MARKER not in text and MARKER.lower() not in text
    assert opened.salt not in raw and opened.salt.hex() not in text
    assert MARKER not in repr(opened) and MARKER not in str(opened)


# --- tampering -------------------------------------------------------------------------------


def test_every_altered_ciphertext_byte_is_refused(world: World) -> None:
    sealed = world.seal()
    for index in range(len(sealed.ciphertext)):
        altered = _replace(sealed, ciphertext=_flip(sealed.ciphertext, index))
        with pytest.raises(CiphertextRejectedError):
            open_sealed(world.suite, altered, "buyer", world.buyer.private)


def test_every_altered_wrapped_key_byte_is_refused(world: World) -> None:
    sealed = world.seal()
    position = [key.party for key in sealed.keys].index("buyer")
    entry = sealed.keys[position]
    for index in range(len(entry.wrapped)):
        keys = list(sealed.keys)
        keys[position] = Wrapped(entry.party, entry.key_version, _flip(entry.wrapped, index))
        with pytest.raises(UnwrapFailedError):
            open_sealed(world.suite, _replace(sealed, keys=keys), "buyer", world.buyer.private)


def test_an_altered_commitment_is_refused_for_every_reader(world: World) -> None:
    sealed = world.seal()
    for index in (0, 13, len(sealed.commitment) - 1):
        altered = _replace(sealed, commitment=_flip(sealed.commitment, index))
        for party in (world.buyer, world.escrow):
            with pytest.raises(UnwrapFailedError):
                open_sealed(world.suite, altered, party.name, party.private)
        assert not verify_opening(world.suite, altered, LABEL, *_opening(world, sealed))


def test_an_altered_label_is_refused(world: World) -> None:
    sealed = world.seal()
    for label in ("receivable/termz", "receivable", LABEL + "/x"):
        with pytest.raises(UnwrapFailedError):
            open_sealed(world.suite, _replace(sealed, label=label), "buyer", world.buyer.private)
        salt, value = _opening(world, sealed)
        assert not verify_opening(world.suite, sealed, label, salt, value)


def test_a_wrapped_key_moved_to_another_record_is_refused(world: World) -> None:
    """The precise code matters: without the context binding, the moved key would unwrap and
    only the AEAD would refuse (ciphertext_rejected); the binding refuses it at the unwrap."""
    first, second = world.seal(), world.seal({"other": 1})
    moved = [key if key.party != "buyer" else _key(first, "buyer") for key in second.keys]
    with pytest.raises(UnwrapFailedError):
        open_sealed(world.suite, _replace(second, keys=moved), "buyer", world.buyer.private)
    # the same label and commitment under another record's ciphertext: the AEAD refuses it
    spliced = _replace(second, ciphertext=first.ciphertext)
    with pytest.raises(CiphertextRejectedError):
        open_sealed(world.suite, spliced, "buyer", world.buyer.private)


def test_a_moved_wrapped_key_does_not_unwrap_under_the_other_records_context(
    world: World,
) -> None:
    first, second = world.seal(), world.seal()
    wrapped = _key(first, "buyer").wrapped
    assert world.suite.unwrap_key(
        world.buyer.private, wrapped, wrap_context(first.label, first.commitment)
    )
    with pytest.raises(CryptoError):
        world.suite.unwrap_key(
            world.buyer.private, wrapped, wrap_context(second.label, second.commitment)
        )


def test_a_ciphertext_that_does_not_match_the_commitment_is_refused(world: World) -> None:
    """A dishonest sealer encrypts one value and commits to another: every reader refuses it.

    This is also what makes GCM's lack of key commitment harmless here: whatever plaintext a
    crafted ciphertext yields for some reader, it must match the one commitment."""
    sealed = world.seal()
    data_key = world.suite.unwrap_key(
        world.buyer.private, _key(sealed, "buyer").wrapped, wrap_context(LABEL, sealed.commitment)
    )
    salt, _value = _opening(world, sealed)
    for swapped_salt, swapped_value in ((salt, {"price": 1}), (os.urandom(32), VALUE)):
        plaintext = encode(envelope._Plaintext(salt=swapped_salt, value=swapped_value))
        ciphertext = world.suite.encrypt(
            data_key,
            plaintext,
            envelope._associated_data(world.suite.name, LABEL, sealed.commitment),
        )
        lying = _replace(sealed, ciphertext=ciphertext)
        for party in (world.buyer, world.escrow):
            with pytest.raises(CommitmentMismatchError) as refused:
                open_sealed(world.suite, lying, party.name, party.private)
            assert refused.value.code == "commitment_mismatch"


def test_a_record_under_another_suite_is_refused(world: World) -> None:
    sealed = world.seal()
    other = suite("gm" if world.suite.name == "intl" else "intl")
    with pytest.raises(MalformedSealedRecordError):
        open_sealed(other, sealed, "buyer", world.buyer.private)
    salt, value = _opening(world, sealed)
    assert not verify_opening(other, sealed, LABEL, salt, value)


# --- commitments -----------------------------------------------------------------------------


def test_commitment_checks_what_a_party_reveals(world: World) -> None:
    sealed = world.seal()
    salt, value = _opening(world, sealed)
    assert commitment_of(world.suite, LABEL, salt, value) == sealed.commitment
    assert verify_opening(world.suite, sealed.commitment, LABEL, salt, value)
    assert verify_opening(world.suite, sealed, LABEL, salt, value)
    reordered = dict(reversed(list(value.items())))
    assert verify_opening(world.suite, sealed, LABEL, salt, reordered)  # maps are canonical
    wrong: list[tuple[str, bytes, Any]] = [
        (LABEL, _flip(salt, 0), value),
        (LABEL, salt, {**value, "price": value["price"] + 1}),
        (LABEL, salt, {**value, "extra": None}),
        (LABEL, salt, [value]),
        (LABEL, salt[:-1], value),
        ("receivable/other", salt, value),
    ]
    for label, bad_salt, bad_value in wrong:
        assert not verify_opening(world.suite, sealed, label, bad_salt, bad_value)
        assert not verify_opening(world.suite, sealed.commitment, label, bad_salt, bad_value)


def test_verify_opening_never_raises(world: World) -> None:
    sealed = world.seal()
    salt, _value = _opening(world, sealed)
    junk: list[tuple[Any, Any, Any, Any]] = [
        (sealed, LABEL, salt, 1.5),
        (sealed, LABEL, salt, {"a": b"bytes"}),
        (sealed, LABEL, salt, {1: 2}),
        (sealed, LABEL, "salt", 1),
        (sealed, "", salt, 1),
        (sealed, None, salt, 1),
        ("not bytes", LABEL, salt, 1),
        (None, LABEL, salt, 1),
        (b"", LABEL, salt, 1),
        (sealed, LABEL, salt, 2**64),
    ]
    for record, label, bad_salt, value in junk:
        assert verify_opening(world.suite, record, label, bad_salt, value) is False


def test_commitments_are_length_prefixed(world: World) -> None:
    salt = bytes(32)
    assert commitment_of(world.suite, "a", salt, "bc") != commitment_of(
        world.suite, "ab", salt, "c"
    )
    assert commitment_of(world.suite, "a", salt, 1) == commitment_of(world.suite, "a", salt, 1)


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        {"price": 1.0},
        b"bytes",
        (1, 2),
        {1: "int key"},
        {"set": {1}},
        2**64,
        -(2**63) - 1,
        "x" * (envelope.VALUE_BYTES_MAX + 1),
        [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],
    ],
    ids=[
        "float",
        "nested float",
        "bytes",
        "tuple",
        "int key",
        "set",
        "2^64",
        "-2^63-1",
        "big",
        "deep",
    ],
)
def test_values_outside_json_like_data_are_refused(world: World, value: Any) -> None:
    with pytest.raises(InvalidRecordValueError):
        world.seal(value)
    with pytest.raises(InvalidRecordValueError):
        commitment_of(world.suite, LABEL, bytes(32), value)


@pytest.mark.parametrize("value", [None, True, 0, -(2**63), 2**64 - 1, "", [], {}, {"a": [1, "b"]}])
def test_edge_values_round_trip(world: World, value: Any) -> None:
    sealed = world.seal(value)
    assert open_sealed(world.suite, sealed, "supplier", world.supplier.private).value == value


# --- sealing refuses bad readers and labels --------------------------------------------------


def test_sealing_refuses_bad_readers(world: World) -> None:
    s, escrow = world.suite, world.escrow.reader
    buyer = world.buyer.reader
    with pytest.raises(DuplicateReaderError):
        seal(s, LABEL, 1, [buyer, Reader("buyer", 2, world.supplier.public)], escrow)
    with pytest.raises(DuplicateReaderError):
        seal(s, LABEL, 1, [Reader(ESCROW_PARTY, 1, world.buyer.public)], escrow)
    with pytest.raises(InvalidReaderError):
        seal(s, LABEL, 1, [buyer], Reader("regulator", 1, world.escrow.public))
    with pytest.raises(TooManyReadersError):
        readers = [Reader(f"bank-{i}", 1, world.buyer.public) for i in range(READERS_MAX + 1)]
        seal(s, LABEL, 1, readers, escrow)
    low_order = bytes(32) if s.name == "intl" else b"\x04" + bytes(64)
    bad: list[Reader] = [
        Reader("buyer", 1, low_order),
        Reader("buyer", 1, world.buyer.public[:-1]),
        Reader("", 1, world.buyer.public),
        Reader("bank a", 1, world.buyer.public),
        Reader("x" * 65, 1, world.buyer.public),
        Reader("buyer", -1, world.buyer.public),
        Reader("buyer", 2**32, world.buyer.public),
        Reader("buyer", True, world.buyer.public),
    ]
    for reader in bad:
        with pytest.raises(InvalidReaderError):
            seal(s, LABEL, 1, [reader], escrow)


def test_sealing_with_the_most_readers_fits_the_bound(world: World) -> None:
    readers = [Reader(f"bank-{i:02d}", 1, world.buyer.public) for i in range(READERS_MAX)]
    value = "v" * (envelope.VALUE_BYTES_MAX - 8)
    sealed = seal(world.suite, LABEL, value, readers, world.escrow.reader)
    assert len(bytes.fromhex(encode_sealed(sealed))) <= SEALED_BYTES_MAX
    assert decode_sealed(encode_sealed(sealed)) == sealed


@pytest.mark.parametrize("label", ["", "x" * 65, "with space", "naïve", "a\n", 5])
def test_bad_labels_are_refused(world: World, label: Any) -> None:
    with pytest.raises(InvalidRecordLabelError):
        world.seal(label=label)


# --- the strict decoder ----------------------------------------------------------------------


def test_decode_round_trips(world: World) -> None:
    sealed = world.seal()
    text = encode_sealed(sealed)
    assert text == text.lower()
    assert decode_sealed(text) == sealed
    assert encode_sealed(decode_sealed(text)) == text


def _malformed_texts(world: World) -> list[Any]:
    sealed = world.seal()
    text = encode_sealed(sealed)
    no_escrow = _replace(sealed, keys=[key for key in sealed.keys if key.party != ESCROW_PARTY])
    unsorted = _replace(sealed, keys=list(reversed(sealed.keys)))
    duplicate = _replace(sealed, keys=[sealed.keys[0], *sealed.keys])
    short_wrap = _replace(
        sealed, keys=[Wrapped(k.party, k.key_version, k.wrapped[:-1]) for k in sealed.keys]
    )
    as_map = msgspec.msgpack.encode(msgspec.structs.asdict(sealed)).hex()
    return [
        text.upper(),
        text[:-1],
        text + "00",
        text[:-2],
        "zz" + text[2:],
        "",
        " " + text,
        text + "\n",
        None,
        b"00",
        "00" * (SEALED_BYTES_MAX + 1),
        as_map,
        encode(_replace(sealed, v=2)).hex(),
        encode(_replace(sealed, suite="other")).hex(),
        encode(_replace(sealed, label="bad label")).hex(),
        encode(_replace(sealed, commitment=sealed.commitment[:-1])).hex(),
        encode(_replace(sealed, ciphertext=b"")).hex(),
        encode(_replace(sealed, ciphertext=bytes(27))).hex(),
        encode(no_escrow).hex(),
        encode(unsorted).hex(),
        encode(duplicate).hex(),
        encode(short_wrap).hex(),
        encode(_replace(sealed, keys=[])).hex(),
        encode([0, *msgspec.structs.astuple(sealed)]).hex(),
    ]


def test_decode_refuses_everything_else(world: World) -> None:
    for candidate in _malformed_texts(world):
        with pytest.raises(MalformedSealedRecordError) as refused:
            decode_sealed(candidate)
        assert refused.value.code == "malformed_sealed_record"


def test_decoding_and_checking_draw_no_randomness(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = world.seal()
    text = encode_sealed(sealed)
    salt, value = _opening(world, sealed)

    def no_randomness(_size: int) -> bytes:
        raise AssertionError("a pure check drew randomness")

    monkeypatch.setattr(os, "urandom", no_randomness)
    assert decode_sealed(text) == sealed
    assert verify_opening(world.suite, decode_sealed(text), LABEL, salt, value)
    assert commitment_of(world.suite, LABEL, salt, value) == sealed.commitment
    with pytest.raises(MalformedSealedRecordError):
        decode_sealed(text[:-2])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdef", max_size=400) | st.text(max_size=50))
def test_decode_of_arbitrary_text_raises_only_the_malformed_code(text: str) -> None:
    try:
        decode_sealed(text)
    except MalformedSealedRecordError:
        return
    raise AssertionError("arbitrary text decoded as a sealed record")


# --- key rotation ----------------------------------------------------------------------------


def test_rewrap_to_a_new_key_version_keeps_access(world: World) -> None:
    sealed = world.seal()
    new_private, new_public = world.suite.generate_encryption_keypair()
    wrapped = rewrap(
        world.suite, sealed, "buyer", world.buyer.private, Reader("buyer", 2, new_public)
    )
    assert wrapped.party == "buyer" and wrapped.key_version == 2
    keys = [wrapped if key.party == "buyer" else key for key in sealed.keys]
    rotated = _replace(sealed, keys=keys)
    assert decode_sealed(encode_sealed(rotated)) == rotated
    assert open_sealed(world.suite, rotated, "buyer", new_private).value == VALUE
    with pytest.raises(UnwrapFailedError):
        open_sealed(world.suite, rotated, "buyer", world.buyer.private)
    # the escrow rotates the same way
    escrow_private, escrow_public = world.suite.generate_encryption_keypair()
    escrow_wrapped = rewrap(
        world.suite,
        rotated,
        ESCROW_PARTY,
        world.escrow.private,
        Reader(ESCROW_PARTY, 2, escrow_public),
    )
    rotated = _replace(
        rotated, keys=[escrow_wrapped if k.party == ESCROW_PARTY else k for k in keys]
    )
    assert open_sealed(world.suite, rotated, ESCROW_PARTY, escrow_private).value == VALUE


def test_rewrap_refuses_wrong_keys_and_other_parties(world: World) -> None:
    sealed = world.seal()
    _new_private, new_public = world.suite.generate_encryption_keypair()
    with pytest.raises(UnwrapFailedError):
        rewrap(world.suite, sealed, "buyer", world.outsider.private, Reader("buyer", 2, new_public))
    with pytest.raises(InvalidReaderError):
        rewrap(world.suite, sealed, "buyer", world.buyer.private, Reader("outsider", 2, new_public))
    with pytest.raises(NotAReaderError):
        rewrap(
            world.suite,
            sealed,
            "outsider",
            world.outsider.private,
            Reader("outsider", 2, new_public),
        )
    # a record whose ciphertext does not open is never re-wrapped
    broken = _replace(sealed, ciphertext=_flip(sealed.ciphertext, 0))
    with pytest.raises(CiphertextRejectedError):
        rewrap(world.suite, broken, "buyer", world.buyer.private, Reader("buyer", 2, new_public))


# --- helpers ---------------------------------------------------------------------------------


def _key(sealed: Sealed, party: str) -> Wrapped:
    return next(key for key in sealed.keys if key.party == party)


def _opening(world: World, sealed: Sealed) -> tuple[bytes, Any]:
    opened = open_sealed(world.suite, sealed, ESCROW_PARTY, world.escrow.private)
    return opened.salt, opened.value


# --- properties ------------------------------------------------------------------------------

JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PROPERTY_WORLDS = {name: World(name) for name in SUITE_NAMES}


@settings(max_examples=40, deadline=None)
@given(value=JSON_LIKE, suite_name=st.sampled_from(SUITE_NAMES))
def test_any_json_like_value_round_trips_and_verifies(value: Any, suite_name: str) -> None:
    world = PROPERTY_WORLDS[suite_name]
    sealed = decode_sealed(encode_sealed(world.seal(value)))
    opened = open_sealed(world.suite, sealed, "buyer", world.buyer.private)
    assert opened.value == value
    assert verify_opening(world.suite, sealed, LABEL, opened.salt, value)
    assert not verify_opening(world.suite, sealed, LABEL, opened.salt, [value])


@settings(max_examples=200, deadline=None)
@given(
    value=st.from_type(object) | JSON_LIKE | st.floats(),
    salt=st.binary(min_size=30, max_size=34),
    label=st.text(max_size=70),
)
def test_verify_opening_of_arbitrary_input_is_a_boolean(
    value: Any, salt: bytes, label: str
) -> None:
    s = suite("intl")
    assert verify_opening(s, bytes(32), label, salt, value) in (True, False)
