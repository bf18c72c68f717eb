"""`vault` v1: sealed records that only their readers and the regulator can open.

What it is for. A party stores a sealed record (`consortia.privacy.envelope`): a ciphertext
under a fresh data key, the data key wrapped to each reader's registered encryption key and,
always, to the regulator's escrow key, and a salted commitment to the plaintext. The chain
keeps only that: no node, member or mirror learns the plaintext, and a reader opens it with
its own private key off the chain. Other contracts refer to a record by its id (a
receivable's confidential terms, say) and check who can read it through vault_state.py.

Rules a stored record obeys (checked by `put`, each with its own refusal code): it decodes,
within bounds (`malformed_sealed_record`, `record_too_large`); it is sealed under the chain's
suite (`wrong_suite`); every reader named has a registered encryption key and a wrapped key
at that key's current version (`no_encryption_key`, `missing_reader_key`, `stale_reader_key`);
the escrow key is set and wrapped to at its current version (`no_escrow_key`,
`missing_escrow_key`, `stale_escrow_key`); no wrapped key is for anyone else, nor two for one
party (`unknown_party`, `duplicate_party`); the id is free (`record_exists`); no stored record
has its commitment, so a record copied from the chain is refused (`commitment_exists`).

After a key rotation a reader adds a wrap for its own newer key version (`rewrap`; a
regulator account does it for the escrow party); a reader (or the owner) adds a reader
(`share`: the supplier shows its bank the terms); and a party may disclose the plaintext for
a dispute (`reveal`): the contract checks it against the commitment. The contract cannot
check that a wrapped key opens (it has no private key): a wrong wrap harms only the party it
was for, and the commitment lets anyone check a plaintext they were given.

This module owns the `vault/` namespace (layout in vault_state.py). It must never store or
emit a plaintext (events name records and parties only; `reveal` records who disclosed, the
value stays in that transaction's arguments), never read a clock or randomness, never read
another contract's state but through its accessors.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import (
    Context,
    Contract,
    SealedView,
    arg_hex,
    arg_int,
    arg_list,
    arg_str,
    method,
)
from consortia.execution.contracts import identity_state, regulator, regulator_state
from consortia.execution.contracts import vault_state as state
from consortia.execution.contracts.regulator_state import ESCROW_PARTY

ACCOUNT_ID_LENGTH_MAX = identity_state.ACCOUNT_ID_LENGTH_MAX


class Vault(Contract):
    name = state.CONTRACT
    version = 1

    @method("put")
    def put(self, ctx: Context, args: dict[str, Any]) -> None:
        """The signer stores a sealed record under a new id, readable by `readers`."""
        record_id = state.record_id_arg(args)
        readers = _readers_arg(ctx, args)
        sealed = _chunked_arg(ctx, args, "sealed")
        ctx.require(
            len(sealed) <= state.SEALED_HEX_LENGTH_MAX,
            "record_too_large",
            f"a sealed record is at most {state.SEALED_HEX_LENGTH_MAX // 2} bytes",
        )
        ctx.require(
            not ctx.has(state.record_key(record_id)),
            "record_exists",
            f"record {record_id!r} exists",
        )
        view = ctx.sealed_record(sealed)
        if view is None:
            ctx.fail("malformed_sealed_record", "sealed is not a sealed record")
        ctx.require(
            view.suite == ctx.suite,
            "wrong_suite",
            f"the record is sealed under {view.suite!r}; this chain uses {ctx.suite!r}",
        )
        ctx.require(
            0 < len(view.label) <= state.LABEL_LENGTH_MAX,
            "malformed_sealed_record",
            f"a label is 1 to {state.LABEL_LENGTH_MAX} characters",
        )
        versions = _wrapped_versions(ctx, view, readers)
        # A sealed record is stored once: anyone may copy its bytes from the chain (and name
        # itself a reader with a wrap no one can check), so a copy under another id and owner
        # would serve a second use of the same terms (`terms_in_use` counts record ids).
        ctx.require(
            not ctx.has(state.commitment_key(view.commitment)),
            "commitment_exists",
            "a record with this commitment is stored already: seal the value afresh",
        )
        ctx.put(state.commitment_key(view.commitment), record_id)
        ctx.put(
            state.record_key(record_id),
            {
                "owner": ctx.origin,
                "label": view.label,
                "suite": view.suite,
                "commitment": view.commitment,
                "sealed": sealed,
                "readers": sorted(readers),
                "versions": versions,
                "wraps": [],
                "height": ctx.height,
                "revealed": None,
            },
        )
        ctx.emit(
            "stored",
            record=record_id,
            owner=ctx.origin,
            label=view.label,
            readers=sorted(readers),
            commitment=view.commitment,
        )

    @method("rewrap")
    def rewrap(self, ctx: Context, args: dict[str, Any]) -> None:
        """A reader wraps the data key to its own newer key version (a regulator account
        does it for the escrow party after the escrow key rotated)."""
        record_id, record = _record_arg(ctx, args)
        party = arg_str(args, "party", max_length=ACCOUNT_ID_LENGTH_MAX)
        if party == ESCROW_PARTY:
            ctx.require(
                regulator.is_regulator(ctx, ctx.origin),
                "not_authorised",
                "only a regulator account rewraps for the escrow key",
            )
        else:
            ctx.require(party == ctx.origin, "not_authorised", "a reader rewraps only for itself")
            ctx.require(
                state.readable_by(record, party), "not_reader", f"{party} reads no {record_id}"
            )
        key_version = _current_version_arg(ctx, args, party)
        ctx.require(
            key_version > record["versions"][party],
            "already_wrapped",
            f"{record_id} is wrapped to {party}'s key version {record['versions'][party]}",
        )
        _add_wrap(ctx, record_id, record, party, key_version=key_version, args=args)
        ctx.emit("rewrapped", record=record_id, party=party, key_version=key_version, by=ctx.origin)

    @method("share")
    def share(self, ctx: Context, args: dict[str, Any]) -> None:
        """A reader (or the owner) adds a reader: a wrap of the data key to that account's
        current encryption key. Who shared with whom is on the ledger. The owner may share
        again with a party another reader added, replacing that reader's wrap (the newest
        wrap for a party is the one that counts)."""
        record_id, record = _record_arg(ctx, args)
        ctx.require(
            ctx.origin == record["owner"] or state.readable_by(record, ctx.origin),
            "not_reader",
            f"only the owner or a reader of {record_id} shares it",
        )
        party = _reader_arg(ctx, args.get("party"))
        if state.readable_by(record, party):
            # The owner may replace a wrap another reader gave `party` (the contract cannot
            # check a wrap opens: a reader could pre-empt the owner's share with garbage).
            ctx.require(
                ctx.origin == record["owner"] and _shared_by_another(record, party),
                "already_reader",
                f"{party} reads it already",
            )
        else:
            ctx.require(
                len(record["readers"]) < state.READERS_MAX,
                "too_many_readers",
                f"a record has at most {state.READERS_MAX} readers",
            )
            record["readers"] = sorted([*record["readers"], party])
        key_version = _current_version_arg(ctx, args, party)
        _add_wrap(ctx, record_id, record, party, key_version=key_version, args=args)
        ctx.emit("shared", record=record_id, party=party, key_version=key_version, by=ctx.origin)

    @method("reveal")
    def reveal(self, ctx: Context, args: dict[str, Any]) -> None:
        """The owner, a reader or a regulator account discloses the plaintext (`value`, hex,
        with its `salt`) for a dispute; the contract checks it against the commitment. The
        value stays in this transaction's arguments: the record keeps only who disclosed."""
        record_id, record = _record_arg(ctx, args)
        ctx.require(
            ctx.origin == record["owner"]
            or state.readable_by(record, ctx.origin)
            or regulator.is_regulator(ctx, ctx.origin),
            "not_reader",
            f"only the owner, a reader or the regulator discloses {record_id}",
        )
        ctx.require(record["revealed"] is None, "already_revealed", f"{record_id} is disclosed")
        salt = arg_hex(args, "salt", length_max=state.SALT_HEX_LENGTH_MAX)
        value = arg_hex(
            {"value": _chunked_arg(ctx, args, "value")},
            "value",
            length_max=state.SEALED_HEX_LENGTH_MAX,
        )
        ctx.require(
            ctx.opening_matches(record["label"], record["commitment"], salt, value),
            "opening_mismatch",
            f"that value and salt do not open the commitment of {record_id}",
        )
        record["revealed"] = {"by": ctx.origin, "height": ctx.height}
        ctx.put(state.record_key(record_id), record)
        ctx.emit("revealed", record=record_id, by=ctx.origin)


# ---------------------------------------------------------------------- checks


def _wrapped_versions(ctx: Context, view: SealedView, readers: list[str]) -> dict[str, int]:
    """{party: key version} of the record's wrapped keys, after checking them: one for each
    reader at its current key version, one for the escrow party at the current escrow
    version, none for anyone else."""
    wrapped: dict[str, int] = {}
    for party, key_version in view.readers:
        ctx.require(party not in wrapped, "duplicate_party", f"two wrapped keys for {party}")
        ctx.require(
            party == ESCROW_PARTY or party in readers,
            "unknown_party",
            f"a wrapped key for {party}, who is not among the readers",
        )
        wrapped[party] = key_version
    for reader in readers:
        current = identity_state.read_encryption_key(ctx.read_other, reader)
        if current is None:
            ctx.fail("no_encryption_key", f"{reader} has registered no encryption key")
        ctx.require(reader in wrapped, "missing_reader_key", f"no wrapped key for {reader}")
        ctx.require(
            wrapped[reader] == current[0],
            "stale_reader_key",
            f"{reader}'s key is at version {current[0]}, the record wraps {wrapped[reader]}",
        )
    escrow = regulator_state.read_escrow_key(ctx.read_other)
    if escrow is None:
        ctx.fail("no_escrow_key", "governance has set no escrow key: nothing can be sealed")
    ctx.require(ESCROW_PARTY in wrapped, "missing_escrow_key", "no wrapped key for the escrow")
    ctx.require(
        wrapped[ESCROW_PARTY] == escrow[0],
        "stale_escrow_key",
        f"the escrow key is at version {escrow[0]}, the record wraps {wrapped[ESCROW_PARTY]}",
    )
    return dict(sorted(wrapped.items()))


def _shared_by_another(record: dict[str, Any], party: str) -> bool:
    """Whether `party`'s newest wrap was added by a reader other than the owner and the party
    itself (a share the owner may replace)."""
    own = [wrap for wrap in record["wraps"] if wrap["party"] == party]
    return bool(own) and own[-1]["by"] not in (record["owner"], party)


def _chunked_arg(ctx: Context, args: dict[str, Any], name: str) -> str:
    """Text that may exceed a transaction argument's 4096 characters: the text itself, or a
    list of chunks joined in order (the list itself is bounded by the transaction's limits,
    256 items; the caller bounds the total)."""
    given = args.get(name)
    chunks: list[Any] = given if isinstance(given, list) else [given]
    ctx.require(
        bool(chunks) and all(isinstance(chunk, str) and bool(chunk) for chunk in chunks),
        "bad_argument",
        f"{name} is hex text, or a list of hex chunks",
    )
    return "".join(chunks)


def _readers_arg(ctx: Context, args: dict[str, Any]) -> list[str]:
    given = arg_list(args, "readers", max_length=state.READERS_MAX)
    ctx.require(bool(given), "bad_argument", "a record has at least one reader")
    readers = [_reader_arg(ctx, reader) for reader in given]
    ctx.require(len(set(readers)) == len(readers), "bad_argument", "readers are distinct")
    return readers


def _reader_arg(ctx: Context, value: Any) -> str:
    """An account that may read a record (the escrow party is never an account's name)."""
    ctx.require(
        isinstance(value, str) and 0 < len(value) <= ACCOUNT_ID_LENGTH_MAX,
        "bad_argument",
        "a reader is an account id",
    )
    assert isinstance(value, str)
    ctx.require(value != ESCROW_PARTY, "bad_argument", "the escrow party is always a reader")
    ctx.require(
        identity_state.account_exists(ctx, value), "unknown_account", f"no account {value!r}"
    )
    return value


def _record_arg(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    record_id = state.record_id_arg(args)
    record = state.read_vault_record(ctx.read_other, record_id)
    if record is None:
        ctx.fail("unknown_record", f"no record {record_id!r}")
    return record_id, record


def _current_version_arg(ctx: Context, args: dict[str, Any], party: str) -> int:
    """`key_version`: the current version of `party`'s encryption key (the escrow key's for
    the escrow party)."""
    if party == ESCROW_PARTY:
        current = regulator_state.read_escrow_key(ctx.read_other)
    else:
        current = identity_state.read_encryption_key(ctx.read_other, party)
    if current is None:
        ctx.fail("no_encryption_key", f"{party} has no registered encryption key")
    key_version = arg_int(args, "key_version", minimum=1)
    ctx.require(
        key_version == current[0],
        "stale_key_version",
        f"{party}'s current key version is {current[0]}, not {key_version}",
    )
    return key_version


def _add_wrap(
    ctx: Context,
    record_id: str,
    record: dict[str, Any],
    party: str,
    *,
    key_version: int,
    args: dict[str, Any],
) -> None:
    wrapped = arg_hex(args, "wrapped", length_max=state.WRAPPED_HEX_LENGTH_MAX)
    ctx.require(
        len(wrapped) == 2 * ctx.wrapped_key_size,
        "bad_wrapped_key",
        f"a wrapped key is {ctx.wrapped_key_size} bytes under the {ctx.suite} suite",
    )
    # The escrow party's wraps count apart, so readers filling theirs never block supervision.
    escrow = party == ESCROW_PARTY
    limit = state.ESCROW_WRAPS_MAX if escrow else state.WRAPS_MAX
    added = sum(1 for entry in record["wraps"] if (entry["party"] == ESCROW_PARTY) == escrow)
    ctx.require(
        added < limit,
        "too_many_wraps",
        f"at most {limit} wraps are added to a record for "
        + ("the escrow party" if escrow else "its readers"),
    )
    entry = {
        "party": party,
        "key_version": key_version,
        "wrapped": wrapped,
        "by": ctx.origin,
        "height": ctx.height,
    }
    record["wraps"] = [*record["wraps"], entry]
    record["versions"] = dict(sorted({**record["versions"], party: key_version}.items()))
    ctx.put(state.record_key(record_id), record)
