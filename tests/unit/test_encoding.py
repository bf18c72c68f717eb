"""The canonical encoding: round trips, one encoding per value, and one error for bad input.

`decode` must return a value whose encoding is exactly its input, or raise `DecodeError`:
never another exception, never a value for non-canonical, oversized, truncated, extended or
mistyped bytes, and never a value that breaks a declared constraint.
"""

from __future__ import annotations

import array
import inspect
import itertools
import json
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from consortia.errors import DecodeError
from consortia.types import consensus, encoding, transaction
from consortia.types.consensus import (
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    ConsensusMessage,
    EpochConfig,
    Proposal,
    ProposalData,
    QuorumCertificate,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    Validator,
    Vote,
    VoteData,
)
from consortia.types.encoding import MESSAGE_SIZE_MAX, decode, encode
from consortia.types.genesis import (
    CommitteeSeat,
    ConsensusParams,
    Genesis,
    GenesisAccount,
    GenesisValidator,
    Governance,
    Member,
    MempoolParams,
)
from consortia.types.primitives import U64_MAX, VALIDATORS_MAX
from consortia.types.transaction import ARG_BYTES_MAX, ARG_LIST_MAX, ARGS_MAX, TransactionBody
from tests.strategies import (
    STRATEGIES_BY_TYPE,
    block_headers,
    blocks,
    canonical_values,
    consensus_messages,
    epoch_configs,
    geneses,
    quorum_certificates,
    transaction_bodies,
    validators,
    vote_data,
)

# No example database in the checkout; no per-example deadline (first calls warm caches).
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(PROPERTY, max_examples=200)

ALL_TYPES: list[type] = list(STRATEGIES_BY_TYPE)
UNION_MEMBERS: tuple[type, ...] = get_args(ConsensusMessage)
# Everything `decode` is asked to parse in these tests: each struct type, and the union.
DECODE_TARGETS: list[Any] = [*ALL_TYPES, ConsensusMessage]


def _name(type_: Any) -> str:
    return getattr(type_, "__name__", "ConsensusMessage")


def _decode_or_reject(data: bytes, type_: Any) -> Any:
    """The decoded value, or None for a DecodeError. Any other exception fails the test.

    A value is only acceptable if its canonical encoding is exactly the input.
    """
    try:
        value = decode(data, type_)
    except DecodeError as error:
        assert error.code == "decode_error"
        return None
    assert encode(value) == bytes(data)
    return value


def _raw(value: Any) -> Any:
    """The value's encoding parsed without a schema: nested lists, ints, str, bytes, dicts."""
    return msgspec.msgpack.decode(encode(value))


def _pack(raw: Any) -> bytes:
    """Encode schema-less data, bypassing constructors and their __post_init__ checks."""
    return msgspec.msgpack.encode(raw)


def _index(type_: type, field: str) -> int:
    """Position of `field` in an array-like tagged struct's encoding (the tag is at 0)."""
    return 1 + type_.__struct_fields__.index(field)


def _tag(type_: type) -> str:
    return type_.__struct_config__.tag


def _reject(data: bytes, type_: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data, type_)
    assert caught.value.code == "decode_error"
    return caught.value


# --- Coverage of the strategies -------------------------------------------------------------


def _tagged_structs(module: Any) -> set[type]:
    return {
        member
        for _, member in inspect.getmembers(module, inspect.isclass)
        if issubclass(member, msgspec.Struct)
        and member.__module__ == module.__name__
        and member.__struct_config__.tag is not None
    }


def test_every_canonical_struct_has_a_strategy() -> None:
    expected = _tagged_structs(consensus) | _tagged_structs(transaction)
    assert expected == set(STRATEGIES_BY_TYPE)
    assert set(UNION_MEMBERS) <= expected


def test_tags_are_unique_and_every_canonical_struct_is_array_like() -> None:
    tags = [_tag(type_) for type_ in ALL_TYPES]
    assert len(tags) == len(set(tags))
    for type_ in ALL_TYPES:
        config = type_.__struct_config__
        assert config.array_like
        assert config.frozen
        assert config.forbid_unknown_fields


# --- Round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ALL_TYPES, ids=_name)
@PROPERTY
@given(data=st.data())
def test_round_trip(type_: type, data: st.DataObject) -> None:
    value = data.draw(STRATEGIES_BY_TYPE[type_]())
    encoded = encode(value)
    assert isinstance(encoded, bytes)
    decoded = decode(encoded, type_)
    assert decoded == value
    assert type(decoded) is type_
    # Any bytes-like input gives the same value.
    assert decode(bytearray(encoded), type_) == value
    assert decode(memoryview(encoded), type_) == value


@settings(PROPERTY, max_examples=100)
@given(message=consensus_messages())
def test_round_trip_through_the_consensus_message_union(message: Any) -> None:
    # `decode`'s signature says `type[T]`; a union is not a type to mypy, but works at runtime.
    decoded = decode(encode(message), ConsensusMessage)
    assert decoded == message
    assert type(decoded) is type(message)
    assert isinstance(decoded, UNION_MEMBERS)


# --- Determinism ----------------------------------------------------------------------------


@settings(PROPERTY, max_examples=100)
@given(value=canonical_values())
def test_equal_values_encode_to_equal_bytes(value: Any) -> None:
    encoded = encode(value)
    copy = decode(encoded, type(value))
    assert copy == value
    assert copy is not value
    assert encode(copy) == encoded
    assert encode(value) == encoded


@PROPERTY
@given(body=transaction_bodies(), data=st.data())
def test_args_encode_the_same_whatever_their_insertion_order(
    body: TransactionBody, data: st.DataObject
) -> None:
    items = list(body.args.items())
    shuffled = data.draw(st.permutations(items))
    other = msgspec.structs.replace(body, args=dict(shuffled))
    assert other == body
    assert encode(other) == encode(body)
    # The map on the wire is in sorted key order.
    wire_args = _raw(body)[_index(TransactionBody, "args")]
    assert list(wire_args) == sorted(wire_args)


def test_args_insertion_order_example() -> None:
    base = {"amount": 5, "currency": "CNY", "memo": "x", "to": "acct:1"}
    forward = TransactionBody("chain", "alice", bytes(32), 0, "pay", 1, "send", base, 10)
    backward = msgspec.structs.replace(forward, args=dict(reversed(base.items())))
    assert list(backward.args) != list(forward.args)
    assert encode(forward) == encode(backward)


# --- Arbitrary and mutated input: DecodeError or an exact canonical value -------------------


@FUZZ
@given(data=st.binary(max_size=300), type_=st.sampled_from(DECODE_TARGETS))
def test_random_bytes_raise_only_decode_error(data: bytes, type_: Any) -> None:
    _decode_or_reject(data, type_)


@FUZZ
@given(
    type_=st.sampled_from(ALL_TYPES),
    extra_fields=st.integers(min_value=0, max_value=15),
    tail=st.binary(max_size=200),
)
def test_random_bodies_after_a_valid_tag_raise_only_decode_error(
    type_: type, extra_fields: int, tail: bytes
) -> None:
    # A fixarray header and a real tag get the parser past the first checks.
    data = bytes([0x90 | extra_fields]) + encode(_tag(type_)) + tail
    _decode_or_reject(data, type_)
    _decode_or_reject(data, ConsensusMessage)


def _targets(value: Any, data: st.DataObject) -> list[Any]:
    return [type(value), ConsensusMessage, data.draw(st.sampled_from(DECODE_TARGETS))]


@FUZZ
@given(value=canonical_values(), data=st.data())
def test_flipped_byte_raises_only_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = encode(value)
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    mutated = bytearray(encoded)
    mutated[position] ^= mask
    for type_ in _targets(value, data):
        decoded = _decode_or_reject(bytes(mutated), type_)
        # Different bytes can never be the canonical encoding of the same value.
        assert decoded != value or decoded is None


@FUZZ
@given(value=canonical_values(), data=st.data())
def test_truncated_encoding_is_rejected(value: Any, data: st.DataObject) -> None:
    encoded = encode(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    for type_ in _targets(value, data):
        # MessagePack is self-delimiting: no proper prefix of one value is a whole value.
        _reject(encoded[:cut], type_)


@FUZZ
@given(value=canonical_values(), extra=st.binary(min_size=1, max_size=40))
def test_appended_bytes_are_rejected(value: Any, extra: bytes) -> None:
    _reject(encode(value) + extra, type(value))
    _reject(encode(value) + extra, ConsensusMessage)


@FUZZ
@given(value=canonical_values(), data=st.data())
def test_inserted_bytes_raise_only_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = encode(value)
    position = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    inserted = data.draw(st.binary(min_size=1, max_size=16))
    mutated = encoded[:position] + inserted + encoded[position:]
    for type_ in _targets(value, data):
        assert _decode_or_reject(mutated, type_) != value


@FUZZ
@given(first=canonical_values(), second=canonical_values(), data=st.data())
def test_spliced_encodings_raise_only_decode_error(
    first: Any, second: Any, data: st.DataObject
) -> None:
    a, b = encode(first), encode(second)
    cut_a = data.draw(st.integers(min_value=0, max_value=len(a)))
    cut_b = data.draw(st.integers(min_value=0, max_value=len(b)))
    spliced = a[:cut_a] + b[cut_b:]
    for type_ in [type(first), type(second), ConsensusMessage]:
        decoded = _decode_or_reject(spliced, type_)
        if decoded is not None:
            assert encode(decoded) == spliced


# --- Non-canonical encodings ----------------------------------------------------------------


def _fixarray(*elements: bytes) -> bytes:
    assert len(elements) < 16
    return bytes([0x90 | len(elements)]) + b"".join(elements)


VOTE = VoteData("testnet", 1, 2, bytes(range(32)), 3)
_VOTE_PARTS = [encode(item) for item in ("vote", "testnet", 1, 2, bytes(range(32)), 3)]

NON_CANONICAL_VOTES = {
    # epoch = 1, which fits in a positive fixint, written with wider integer formats.
    "epoch_as_uint8": (2, b"\xcc\x01"),
    "epoch_as_uint16": (2, b"\xcd\x00\x01"),
    "epoch_as_uint32": (2, b"\xce\x00\x00\x00\x01"),
    "epoch_as_uint64": (2, b"\xcf" + (1).to_bytes(8, "big")),
    "epoch_as_int8": (2, b"\xd0\x01"),
    "epoch_as_int64": (2, b"\xd3" + (1).to_bytes(8, "big")),
    # The tag, a 4-byte string, as str8 rather than fixstr.
    "tag_as_str8": (0, b"\xd9\x04vote"),
    # The 32-byte hash as bin16 and bin32 rather than bin8.
    "hash_as_bin16": (4, b"\xc5\x00\x20" + bytes(range(32))),
    "hash_as_bin32": (4, b"\xc6\x00\x00\x00\x20" + bytes(range(32))),
}


def test_vote_parts_compose_the_canonical_encoding() -> None:
    assert _fixarray(*_VOTE_PARTS) == encode(VOTE)
    assert decode(_fixarray(*_VOTE_PARTS), VoteData) == VOTE


@pytest.mark.parametrize("case", list(NON_CANONICAL_VOTES))
def test_non_minimal_formats_are_rejected(case: str) -> None:
    position, replacement = NON_CANONICAL_VOTES[case]
    parts = list(_VOTE_PARTS)
    parts[position] = replacement
    variant = _fixarray(*parts)
    # The same logical content, just not the canonical bytes.
    assert msgspec.msgpack.decode(variant) == msgspec.msgpack.decode(encode(VOTE))
    error = _reject(variant, VoteData)
    assert "canonical" in error.message


def test_array16_header_is_rejected() -> None:
    variant = b"\xdc\x00\x06" + b"".join(_VOTE_PARTS)
    assert msgspec.msgpack.decode(variant) == msgspec.msgpack.decode(encode(VOTE))
    _reject(variant, VoteData)


def _body(args: dict[str, Any]) -> TransactionBody:
    return TransactionBody("testnet", "alice", bytes(32), 7, "bank", 1, "pay", args, 100)


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def test_args_map_with_keys_out_of_order_is_rejected() -> None:
    canonical = encode(_body({"a": 1, "b": 2}))
    swapped = _replace_once(canonical, b"\x82\xa1a\x01\xa1b\x02", b"\x82\xa1b\x02\xa1a\x01")
    assert msgspec.msgpack.decode(swapped) == msgspec.msgpack.decode(canonical)
    assert decode(canonical, TransactionBody) == _body({"a": 1, "b": 2})
    _reject(swapped, TransactionBody)


def test_args_map_with_duplicate_keys_is_rejected() -> None:
    canonical = encode(_body({"a": 1}))
    duplicated = _replace_once(canonical, b"\x81\xa1a\x01", b"\x82\xa1a\x01\xa1a\x01")
    _reject(duplicated, TransactionBody)
    conflicting = _replace_once(canonical, b"\x81\xa1a\x01", b"\x82\xa1a\x02\xa1a\x01")
    _reject(conflicting, TransactionBody)


def test_negative_integer_in_a_wider_format_is_rejected() -> None:
    canonical = encode(_body({"a": -1}))
    wide = _replace_once(
        canonical, b"\xa1a\xff", b"\xa1a\xd3" + (-1).to_bytes(8, "big", signed=True)
    )
    assert msgspec.msgpack.decode(wide) == msgspec.msgpack.decode(canonical)
    _reject(wide, TransactionBody)


@PROPERTY
@given(value=canonical_values(), extra=canonical_values())
def test_two_concatenated_messages_are_rejected(value: Any, extra: Any) -> None:
    _reject(encode(value) + encode(extra), type(value))
    _reject(encode(value) + encode(extra), ConsensusMessage)


@PROPERTY
@given(header=block_headers())
def test_omitted_trailing_default_field_is_rejected(header: BlockHeader) -> None:
    header = msgspec.structs.replace(header, next_epoch=None)
    raw = _raw(header)
    assert raw[-1] is None
    # msgspec alone would fill the default in; the canonical check refuses the short form.
    assert msgspec.msgpack.decode(_pack(raw[:-1]), type=BlockHeader) == header
    _reject(_pack(raw[:-1]), BlockHeader)


# --- Tags: unknown, and one type's message read as another ----------------------------------

KNOWN_TAGS = {_tag(type_) for type_ in ALL_TYPES}


@PROPERTY
@given(value=canonical_values(), tag=st.text(max_size=20))
def test_unknown_tag_is_rejected(value: Any, tag: str) -> None:
    assume(tag not in KNOWN_TAGS)
    raw = _raw(value)
    raw[0] = tag
    _reject(_pack(raw), type(value))
    _reject(_pack(raw), ConsensusMessage)


@pytest.mark.parametrize("tag", ["", "VOTE", "vote ", "msg_vote2", "msg_sync_request"])
def test_unknown_tag_examples_are_rejected(tag: str) -> None:
    raw = _raw(VOTE)
    raw[0] = tag
    _reject(_pack(raw), VoteData)
    _reject(_pack(raw), ConsensusMessage)


def test_missing_tag_is_rejected() -> None:
    _reject(_pack(_raw(VOTE)[1:]), VoteData)


@FUZZ
@given(value=canonical_values(), other=st.sampled_from(ALL_TYPES))
def test_a_message_of_one_type_is_not_another(value: Any, other: type) -> None:
    assume(other is not type(value))
    _reject(encode(value), other)


@PROPERTY
@given(value=canonical_values())
def test_only_union_members_decode_as_a_consensus_message(value: Any) -> None:
    if type(value) in UNION_MEMBERS:
        assert decode(encode(value), ConsensusMessage) == value
    else:
        _reject(encode(value), ConsensusMessage)


# --- Size limit -----------------------------------------------------------------------------


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build or use a decoder fails the test."""

    def refuse(_type: Any) -> Any:
        raise AssertionError("the decoder was reached")

    monkeypatch.setattr(encoding, "_decoder", refuse)


@PROPERTY
@given(value=canonical_values())
def test_size_max_is_inclusive_and_refuses_one_byte_more(value: Any) -> None:
    encoded = encode(value)
    assert decode(encoded, type(value), size_max=len(encoded)) == value
    with pytest.raises(DecodeError) as caught:
        decode(encoded, type(value), size_max=len(encoded) - 1)
    error = caught.value
    assert "limit" in error.message
    assert str(len(encoded) - 1) in error.message
    assert str(len(encoded)) in error.message


def test_oversized_valid_encoding_is_refused_before_parsing(no_parsing: None) -> None:
    encoded = encode(VOTE)
    for data in (encoded, bytearray(encoded), memoryview(encoded)):
        with pytest.raises(DecodeError, match=f"limit of {len(encoded) - 1}"):
            decode(data, VoteData, size_max=len(encoded) - 1)


def test_oversized_garbage_reports_the_size_not_a_parse_error() -> None:
    garbage = b"\xc1" * 101  # 0xc1 is never valid MessagePack
    assert "not a valid" in _reject(garbage, VoteData).message
    with pytest.raises(DecodeError) as caught:
        decode(garbage, VoteData, size_max=100)
    assert "limit of 100" in caught.value.message
    assert "not a valid" not in caught.value.message


def test_default_limit_is_message_size_max(no_parsing: None) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(bytes(MESSAGE_SIZE_MAX + 1), Block)
    assert f"limit of {MESSAGE_SIZE_MAX}" in caught.value.message


def test_memoryview_is_measured_in_bytes_not_items(no_parsing: None) -> None:
    wide = memoryview(array.array("Q", [0] * 8))  # 8 items, 64 bytes
    assert len(wide) == 8
    with pytest.raises(DecodeError, match="64 bytes exceeds the limit of 10"):
        decode(wide, VoteData, size_max=10)


def test_non_contiguous_memoryview_raises_decode_error() -> None:
    encoded = encode(SignerSignature(1, bytes(64)))
    strided = memoryview(encoded + encoded)[::2]
    _reject(strided, SignerSignature)


@pytest.mark.parametrize("data", ["text", None, 5, [1, 2], bytearray()])
def test_non_bytes_or_empty_input_raises_decode_error(data: Any) -> None:
    _reject(data, VoteData)


# --- Field constraints ----------------------------------------------------------------------
# Length, range and pattern limits are only enforced by the decoder, so a struct built with a
# bad field encodes fine and must then fail to decode. __post_init__ checks also run in the
# constructor, so those cases are written as schema-less data instead.


def _replaced_encoding(value: Any, **changes: Any) -> bytes:
    return encode(msgspec.structs.replace(value, **changes))


HASH_FIELDS = [
    (VoteData, "block_id"),
    (QuorumCertificate, "block_id"),
    (BlockHeader, "parent_id"),
    (BlockHeader, "payload_root"),
    (BlockHeader, "author"),
    (Validator, "node_id"),
    (ProposalData, "block_id"),
    (Vote, "author"),
    (Timeout, "author"),
    (BlockRequest, "block_id"),
    (BlockResponse, "request_block_id"),
]


@pytest.mark.parametrize(("type_", "field"), HASH_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@PROPERTY
@given(data=st.data(), size=st.integers(min_value=0, max_value=64).filter(lambda n: n != 32))
def test_hash_of_wrong_length_is_rejected(
    type_: type, field: str, data: st.DataObject, size: int
) -> None:
    value = data.draw(STRATEGIES_BY_TYPE[type_]())
    _reject(_replaced_encoding(value, **{field: bytes(size)}), type_)
    # The same value with a right-sized hash is fine.
    assert decode(_replaced_encoding(value, **{field: bytes(32)}), type_) is not None


@PROPERTY
@given(vote=vote_data(), size=st.sampled_from([0, 31, 33, 64]))
def test_nested_hash_of_wrong_length_is_rejected(vote: VoteData, size: int) -> None:
    message = Vote(msgspec.structs.replace(vote, block_id=bytes(size)), bytes(32), bytes(64))
    _reject(encode(message), Vote)
    _reject(encode(message), ConsensusMessage)


@pytest.mark.parametrize("size", [0, 63, 65, 128])
def test_signature_of_wrong_length_is_rejected(size: int) -> None:
    _reject(encode(SignerSignature(0, bytes(size))), SignerSignature)
    _reject(encode(Vote(VOTE, bytes(32), bytes(size))), Vote)


@pytest.mark.parametrize("size", [0, 31, 66])
def test_public_key_of_wrong_length_is_rejected(size: int) -> None:
    _reject(encode(Validator(bytes(32), bytes(size), 1)), Validator)
    _reject(encode(msgspec.structs.replace(_body({}), public_key=bytes(size))), TransactionBody)


ROUND_FIELDS = [
    (VoteData, "round"),
    (VoteData, "epoch"),
    (VoteData, "height"),
    (QuorumCertificate, "round"),
    (TimeoutData, "round"),
    (TimeoutData, "high_qc_round"),
    (TimeoutSignature, "high_qc_round"),
    (TimeoutCertificate, "round"),
    (BlockHeader, "round"),
    (BlockHeader, "timestamp_ms"),
    (ProposalData, "round"),
    (TransactionBody, "nonce"),
]


@pytest.mark.parametrize(("type_", "field"), ROUND_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@PROPERTY
@given(
    data=st.data(),
    bad=st.integers(min_value=-(2**63), max_value=-1) | st.integers(U64_MAX + 1, 2**64 - 1),
)
def test_counter_out_of_range_is_rejected(
    type_: type, field: str, data: st.DataObject, bad: int
) -> None:
    value = data.draw(STRATEGIES_BY_TYPE[type_]())
    _reject(_replaced_encoding(value, **{field: bad}), type_)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (SignerSignature(VALIDATORS_MAX, bytes(64)), SignerSignature),
        (SignerSignature(-1, bytes(64)), SignerSignature),
        (TimeoutSignature(VALIDATORS_MAX, 0, bytes(64)), TimeoutSignature),
        (Validator(bytes(32), bytes(32), 0), Validator),
        (Validator(bytes(32), bytes(32), 2**32 + 1), Validator),
        (BlockRequest(0, bytes(32), 0), BlockRequest),
        (BlockRequest(0, bytes(32), consensus.BLOCK_REQUEST_COUNT_MAX + 1), BlockRequest),
        (msgspec.structs.replace(_body({}), contract_version=0), TransactionBody),
        (msgspec.structs.replace(_body({}), contract=""), TransactionBody),
        (msgspec.structs.replace(_body({}), method="m" * 65), TransactionBody),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_out_of_range_fields_are_rejected(value: Any, type_: type) -> None:
    _reject(encode(value), type_)


BAD_CHAIN_IDS = [
    "",
    "Testnet",
    "-testnet",
    ".testnet",
    "test_net",
    "test net",
    "testnet\n",
    "\ntestnet",
    "tëstnet",
    "test/net",
    "a" * 65,
]
CHAIN_BOUND_TYPES = [VoteData, TimeoutData, ProposalData, TransactionBody, BlockHeader]


@pytest.mark.parametrize("type_", CHAIN_BOUND_TYPES, ids=_name)
@pytest.mark.parametrize("chain_id", BAD_CHAIN_IDS)
@settings(PROPERTY, max_examples=3)
@given(data=st.data())
def test_chain_id_violating_the_pattern_is_rejected(
    type_: type, chain_id: str, data: st.DataObject
) -> None:
    value = data.draw(STRATEGIES_BY_TYPE[type_]())
    _reject(_replaced_encoding(value, chain_id=chain_id), type_)


@pytest.mark.parametrize("chain_id", ["a", "0", "a" * 64, "consortia-main.v1", "0.-"])
def test_chain_ids_at_the_edges_of_the_pattern_are_accepted(chain_id: str) -> None:
    vote = msgspec.structs.replace(VOTE, chain_id=chain_id)
    assert decode(encode(vote), VoteData) == vote


@pytest.mark.parametrize(
    "args",
    [
        {"A": 1},
        {"1a": 1},
        {"a-b": 1},
        {"": 1},
        {"a\n": 1},
        {"a" * 65: 1},
        {f"k{i}": i for i in range(ARGS_MAX + 1)},
        {"a": "x" * (ARG_BYTES_MAX + 1)},
        {"a": list(range(ARG_LIST_MAX + 1))},
        {"a": [True]},
        {"a": [[1]]},
        {"a": 2**63},
        {"a": {"b": 1}},
        {"a": 1.5},
        {"a": b"bytes"},
        {"a": None},
    ],
    ids=repr,
)
def test_invalid_args_are_rejected(args: dict[str, Any]) -> None:
    _reject(encode(_body(args)), TransactionBody)


@pytest.mark.parametrize("sender", ["", "a b", "alice\n", "ålice", "a" * 65])
def test_invalid_sender_is_rejected(sender: str) -> None:
    _reject(encode(msgspec.structs.replace(_body({}), sender=sender)), TransactionBody)


def test_args_at_their_limits_are_accepted() -> None:
    args: dict[str, Any] = {f"k{i}": i for i in range(ARGS_MAX - 3)}
    args |= {
        "long": "x" * ARG_BYTES_MAX,
        "list": list(range(ARG_LIST_MAX)),
        "edge": -(2**63),
    }
    body = _body(args)
    assert decode(encode(body), TransactionBody) == body


def _signer_raw(index: int) -> list[Any]:
    return ["signer", index, bytes(64)]


@PROPERTY
@given(
    qc=quorum_certificates(),
    indexes=st.lists(st.integers(min_value=0, max_value=VALIDATORS_MAX - 1), min_size=2),
)
def test_qc_signatures_must_strictly_increase(qc: QuorumCertificate, indexes: list[int]) -> None:
    raw = _raw(qc)
    raw[_index(QuorumCertificate, "signatures")] = [_signer_raw(i) for i in indexes]
    strictly_increasing = all(a < b for a, b in itertools.pairwise(indexes))
    if strictly_increasing:
        assert decode(_pack(raw), QuorumCertificate).signatures[0].index == indexes[0]
    else:
        error = _reject(_pack(raw), QuorumCertificate)
        assert "sorted" in error.message


@pytest.mark.parametrize("indexes", [[2, 1], [1, 1], [0, 5, 3], [3, 3, 4]])
def test_qc_with_unsorted_or_repeated_signers_is_rejected_where_nested(
    indexes: list[int],
) -> None:
    qc = QuorumCertificate(0, 1, bytes(32), 1, [])
    raw_qc = _raw(qc)
    raw_qc[_index(QuorumCertificate, "signatures")] = [_signer_raw(i) for i in indexes]
    _reject(_pack(raw_qc), QuorumCertificate)
    timeout = Timeout(TimeoutData("testnet", 0, 2, 1), bytes(32), bytes(64), qc)
    raw_timeout = _raw(timeout)
    raw_timeout[_index(Timeout, "high_qc")] = raw_qc
    _reject(_pack(raw_timeout), Timeout)
    _reject(_pack(raw_timeout), ConsensusMessage)


@pytest.mark.parametrize("indexes", [[], [2, 1], [1, 1]])
def test_tc_with_no_unsorted_or_repeated_signers_is_rejected(indexes: list[int]) -> None:
    tc = TimeoutCertificate(
        0, 1, [TimeoutSignature(0, 0, bytes(64))], QuorumCertificate(0, 0, bytes(32), 0, [])
    )
    raw = _raw(tc)
    raw[_index(TimeoutCertificate, "signatures")] = [
        ["timeout_signer", i, 0, bytes(64)] for i in indexes
    ]
    _reject(_pack(raw), TimeoutCertificate)


@PROPERTY
@given(block=blocks(), count=st.integers(min_value=0, max_value=20))
def test_block_payload_length_must_match_payload_count(block: Block, count: int) -> None:
    raw = _raw(block)
    header_raw = raw[_index(Block, "header")]
    header_raw[_index(BlockHeader, "payload_count")] = count
    if count == len(block.payload):
        assert decode(_pack(raw), Block) == block
    else:
        error = _reject(_pack(raw), Block)
        assert "payload" in error.message


def test_block_mismatch_is_rejected_inside_a_proposal() -> None:
    header = BlockHeader(
        "testnet", 1, 0, 1, 1, bytes(32), QuorumCertificate(0, 0, bytes(32), 0, []),
        bytes(32), 0, bytes(32), 1,
    )  # fmt: skip
    proposal = Proposal(Block(header, [b"item"]), bytes(64))
    raw = _raw(proposal)
    raw[_index(Proposal, "block")][_index(Block, "payload")] = []
    _reject(_pack(raw), Proposal)
    _reject(_pack(raw), ConsensusMessage)


@PROPERTY
@given(config=epoch_configs(min_size=2, max_size=5), data=st.data())
def test_epoch_config_validators_must_be_sorted_and_unique(
    config: EpochConfig, data: st.DataObject
) -> None:
    raw = _raw(config)
    position = _index(EpochConfig, "validators")
    members = raw[position]
    assert decode(_pack(raw), EpochConfig) == config
    # Unsorted: any order other than the sorted one.
    shuffled = data.draw(st.permutations(members))
    assume(shuffled != members)
    raw[position] = shuffled
    _reject(_pack(raw), EpochConfig)
    # Duplicated: one validator twice, adjacent so the list is still in order.
    duplicate_at = data.draw(st.integers(min_value=0, max_value=len(members) - 1))
    raw[position] = [
        *members[: duplicate_at + 1],
        members[duplicate_at],
        *members[duplicate_at + 1 :],
    ]
    _reject(_pack(raw), EpochConfig)


def test_epoch_config_with_no_validators_is_rejected() -> None:
    _reject(_pack(["epoch_config", 0, []]), EpochConfig)


def test_duplicate_node_id_with_different_keys_is_rejected() -> None:
    first = Validator(bytes(32), bytes(32), 1)
    second = Validator(bytes(32), b"\x01" * 32, 2)
    _reject(_pack(["epoch_config", 0, [_raw(first), _raw(second)]]), EpochConfig)


# --- Quorum arithmetic ----------------------------------------------------------------------


def _config(powers: list[int]) -> EpochConfig:
    return EpochConfig(
        0, [Validator(i.to_bytes(32, "big"), bytes(32), power) for i, power in enumerate(powers)]
    )


@settings(PROPERTY, max_examples=300)
@given(powers=st.lists(st.integers(min_value=1, max_value=2**32), min_size=1, max_size=40))
@example(powers=[1])
@example(powers=[1, 1, 1])
@example(powers=[1, 1, 1, 1])
@example(powers=[2**32] * VALIDATORS_MAX)
def test_quorum_and_fault_power(powers: list[int]) -> None:
    config = _config(powers)
    total = config.total_power
    quorum = config.quorum_power
    fault = config.fault_power
    assert total == sum(powers)
    # A quorum is more than two thirds, and the least such power.
    assert 3 * quorum > 2 * total
    assert 3 * (quorum - 1) <= 2 * total
    # f is the largest power with 3f < total.
    assert 3 * fault < total
    assert 3 * (fault + 1) >= total
    # Two quorums always share more than f power: the safety argument.
    assert 2 * quorum - total > fault
    # The config survives the encoding, and its arithmetic with it.
    assert decode(encode(config), EpochConfig).quorum_power == quorum


@pytest.mark.parametrize(
    ("powers", "quorum", "fault"),
    [
        ([1], 1, 0),
        ([1] * 3, 3, 0),
        ([1] * 4, 3, 1),
        ([1] * 6, 5, 1),
        ([1] * 7, 5, 2),
        ([10, 1], 8, 3),
    ],
)
def test_quorum_examples(powers: list[int], quorum: int, fault: int) -> None:
    config = _config(powers)
    assert (config.quorum_power, config.fault_power) == (quorum, fault)


@PROPERTY
@given(validator=validators())
def test_single_validator_epoch_needs_all_power(validator: Validator) -> None:
    config = EpochConfig(0, [validator])
    assert config.quorum_power == validator.voting_power * 2 // 3 + 1
    assert config.fault_power == (validator.voting_power - 1) // 3


# --- Genesis document (JSON) ----------------------------------------------------------------


@settings(PROPERTY, max_examples=60)
@given(genesis=geneses())
def test_genesis_json_round_trip(genesis: Genesis) -> None:
    document = msgspec.json.encode(genesis)
    assert msgspec.json.decode(document, type=Genesis) == genesis
    # Everything that parses can be hashed: the canonical MessagePack encoding exists and is
    # stable through another JSON round trip.
    assert encode(msgspec.json.decode(document, type=Genesis)) == encode(genesis)


def _reorder(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _reorder(node[key]) for key in reversed(list(node))}
    if isinstance(node, list):
        return [_reorder(item) for item in node]
    return node


@settings(PROPERTY, max_examples=30)
@given(genesis=geneses())
def test_genesis_encoding_ignores_json_key_order_and_whitespace(genesis: Genesis) -> None:
    plain = json.loads(msgspec.json.encode(genesis))
    pretty = json.dumps(_reorder(plain), indent=3, sort_keys=False).encode()
    parsed = msgspec.json.decode(pretty, type=Genesis)
    assert parsed == genesis
    assert encode(parsed) == encode(genesis)


def _sample_genesis() -> Genesis:
    return Genesis(
        chain_id="testnet",
        suite="intl",
        protocol_version=1,
        genesis_time_ms=1_700_000_000_000,
        ca_certificate_fingerprint="ab" * 32,
        validators=[
            GenesisValidator(
                name="v1",
                member="bank-a",
                node_id="01" * 32,
                public_key="02" * 32,
                certificate_fingerprint="03" * 32,
                voting_power=1,
                address="node1.example:7000",
            )
        ],
        consensus=ConsensusParams(),
        mempool=MempoolParams(),
        members=[Member(name="bank-a", roles=["validator_operator", "member"])],
        governance=Governance(committee=[CommitteeSeat(member="bank-a", weight=1)]),
        accounts=[GenesisAccount(id="acct-1", sponsor="bank-a", public_key="04" * 65)],
    )


UNKNOWN_KEY_PATHS = [
    (),
    ("consensus",),
    ("mempool",),
    ("governance",),
    ("validators", 0),
    ("members", 0),
    ("governance", "committee", 0),
    ("accounts", 0),
]


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@pytest.mark.parametrize("path", UNKNOWN_KEY_PATHS, ids=lambda p: "/".join(map(str, p)) or "top")
def test_genesis_unknown_keys_are_rejected(path: tuple[Any, ...]) -> None:
    document = json.loads(msgspec.json.encode(_sample_genesis()))
    assert msgspec.json.decode(json.dumps(document), type=Genesis) == _sample_genesis()
    _at(document, path)["unexpected"] = 1
    with pytest.raises(msgspec.ValidationError, match="unexpected"):
        msgspec.json.decode(json.dumps(document), type=Genesis)


@settings(PROPERTY, max_examples=20)
@given(genesis=geneses(), key=st.text(min_size=1, max_size=12))
def test_genesis_any_unknown_top_level_key_is_rejected(genesis: Genesis, key: str) -> None:
    assume(key not in Genesis.__struct_fields__)
    document = json.loads(msgspec.json.encode(genesis))
    document[key] = 0
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(document), type=Genesis)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("genesis_time_ms",), 2**64),
        (("genesis_time_ms",), -1),
        (("chain_id",), "testnet\n"),
        (("ca_certificate_fingerprint",), "ab" * 32 + "\n"),
        (("ca_certificate_fingerprint",), "AB" * 32),
        (("validators", 0, "public_key"), "02" * 33),
        (("validators", 0, "address"), "node1.example:7000\n"),
        (("validators", 0, "address"), "node1.example"),
        (("accounts", 0, "currency"), "CNY\n"),
        (("accounts", 0, "id"), "acct:1\n"),
        (("suite",), "rsa"),
        (("members", 0, "roles"), []),
    ],
    ids=repr,
)
def test_genesis_invalid_values_are_rejected(path: tuple[Any, ...], bad: Any) -> None:
    document = json.loads(msgspec.json.encode(_sample_genesis()))
    _at(document, path[:-1])[path[-1]] = bad
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(document), type=Genesis)
