"""`datashare` v1: data shared between members with clear ownership, purpose-bound grants,
the data subject's consent and an access log on chain (docs/datashare.md).

A data owner (a member, through one of its institution accounts) registers a dataset: its
id, name, schema digest, where it lives off chain, its classification, the gateway accounts
that serve it and log its accesses, and optionally its data subject (an account whose consent
grants may require). The owner grants another member access for a stated purpose and period
(heights and/or block time, never a clock), optionally needing the subject's consent, which
the subject's own account gives (`consent`) and may withdraw. The owner's gateway logs every
fetch (`log_access`): who, what, under which grant, a digest of the query and of the answer,
how many rows, when; it is refused without a live grant (`datashare_state.grant_problem`),
and unless the consumer's own signed request stands behind it: the contract rebuilds the
signed bytes (consortia.types.datashare_request), checks they hash to the logged query digest
and verifies the signature under the consumer account's current signing key, so neither a
gateway nor anyone else logs an access the consumer never asked for, nor one signed with a
key the account has replaced.
A grant expires by itself and the owner may revoke it: a revocation holds from the block that
carries it, so no access is logged under the grant in any later block. The regulator lists
every grant and access (`regulator.list_data_grants`, `list_data_accesses`).

Only digests, counts and names reach the chain: the data itself, the query's parameters and
the answer never do (the gateway seals them to the consumer off chain).

This module owns the `datashare/` namespace (layout and readers in datashare_state.py). It
must never log an access without a live grant; never let anyone but the dataset's owner grant
or revoke (and never its gateways: a gateway account only logs), anyone but the subject
consent, or anyone but a current gateway of the owner log, and that only for a request the
consumer account signed with its current key within FRESHNESS_MS of the block's time; never
keep more than the bounds of datashare_state.py; and never read a clock (the request's
timestamp is compared with the block's agreed time).
"""

from __future__ import annotations

from typing import Any

from consortia.execution.contract import Context, Contract, arg_hex, arg_int, arg_str, method
from consortia.execution.contracts import datashare_state as state
from consortia.execution.contracts import identity_state
from consortia.types import datashare_request as request_format


class Datashare(Contract):
    name = state.CONTRACT
    version = 1

    # ------------------------------------------------------------------ datasets

    @method("register_dataset")
    def register_dataset(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """An institution account registers a dataset its member owns; returns the record."""
        owner = _acting_member(ctx)
        dataset_id = state.dataset_id_arg(args)
        ctx.require(
            state.read_dataset(ctx.read_other, dataset_id) is None,
            "dataset_exists",
            f"dataset {dataset_id!r} is registered already",
        )
        owned = state.owner_datasets(ctx.read_other, owner)
        ctx.require(
            len(owned) < state.DATASETS_PER_OWNER_MAX,
            "too_many_datasets",
            f"a member owns at most {state.DATASETS_PER_OWNER_MAX} datasets",
        )
        gateways = state.gateways_arg(ctx, args, owner)
        _require_not_gateway(ctx, gateways)
        dataset = {
            "id": dataset_id,
            "name": state.text_arg(args, "name", state.NAME_LENGTH_MAX),
            "owner": owner,
            "registered_by": ctx.caller,
            "schema_digest": state.digest_arg(args, "schema_digest"),
            "location": state.text_arg(args, "location", state.LOCATION_LENGTH_MAX),
            "classification": state.classification_arg(args),
            "gateways": gateways,
            "subject": state.subject_arg(ctx, args, owner),
            "status": state.ACTIVE,
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(state.dataset_key(dataset_id), dataset)
        ctx.put(state.owner_datasets_key(owner), [*owned, dataset_id])
        ctx.emit(
            "dataset_registered",
            dataset=dataset_id,
            owner=owner,
            classification=dataset["classification"],
            schema_digest=dataset["schema_digest"],
            gateways=dataset["gateways"],
            subject=dataset["subject"],
        )
        return dataset

    @method("set_gateways")
    def set_gateways(self, ctx: Context, args: dict[str, Any]) -> None:
        """The owner replaces the gateway accounts of a dataset (a compromised one is dropped)."""
        dataset = _owned_dataset(ctx, args)
        dataset["gateways"] = state.gateways_arg(ctx, args, dataset["owner"])
        _require_not_gateway(ctx, dataset["gateways"])
        ctx.put(state.dataset_key(dataset["id"]), dataset)
        ctx.emit("gateways_set", dataset=dataset["id"], gateways=dataset["gateways"])

    @method("retire_dataset")
    def retire_dataset(self, ctx: Context, args: dict[str, Any]) -> None:
        """The owner retires a dataset: no grant is issued or used on it any more."""
        dataset = _owned_dataset(ctx, args)
        ctx.require(dataset["status"] == state.ACTIVE, "dataset_retired", "already retired")
        dataset["status"] = state.RETIRED
        ctx.put(state.dataset_key(dataset["id"]), dataset)
        ctx.emit("dataset_retired", dataset=dataset["id"], by=ctx.caller)

    # ------------------------------------------------------------------ grants

    @method("grant")
    def grant(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """The owner grants `consumer` (a member) access to a dataset for `purpose`, from
        `from_height` (default: now) and/or `from_ms`, until `until_height` and/or `until_ms`
        (at least one), optionally needing the subject's consent; returns the grant."""
        dataset = _owned_dataset(ctx, args)
        ctx.require(dataset["status"] == state.ACTIVE, "dataset_retired", "dataset is retired")
        consumer = arg_str(args, "consumer", max_length=identity_state.MEMBER_NAME_LENGTH_MAX)
        standing = identity_state.member_record(ctx, consumer)
        ctx.require(standing is not None, "unknown_member", f"no member {consumer!r}")
        assert standing is not None
        ctx.require(
            not standing["certificate_revoked"],
            "certificate_revoked",
            f"member {consumer}'s certificate is revoked",
        )
        ctx.require(
            consumer != dataset["owner"], "bad_argument", "the owner needs no grant of its own"
        )
        consent_required = state.flag_arg(args, "consent_required")
        ctx.require(
            not consent_required or dataset["subject"] is not None,
            "no_data_subject",
            f"dataset {dataset['id']} names no data subject to consent",
        )
        numbers = state.dataset_grants(ctx.read_other, dataset["id"])
        ctx.require(
            len(numbers) < state.GRANTS_PER_DATASET_MAX,
            "too_many_grants",
            f"a dataset has at most {state.GRANTS_PER_DATASET_MAX} grants",
        )
        number = state.grant_count(ctx.read_other)
        grant = {
            "n": number,
            "dataset": dataset["id"],
            "owner": dataset["owner"],
            "consumer": consumer,
            "purpose": state.text_arg(args, "purpose", state.PURPOSE_LENGTH_MAX),
            "granted_by": ctx.caller,
            "height": ctx.height,
            "time_ms": ctx.time_ms,
            **_period(ctx, args),
            "consent_required": consent_required,
            "subject": dataset["subject"] if consent_required else None,
            "consent": None,
            "consent_withdrawn": None,
            "status": state.ACTIVE,
            "revoked": None,
            "accesses": 0,
            "accesses_max": state.optional_int(
                args, "accesses_max", minimum=1, maximum=state.ACCESSES_PER_GRANT_MAX
            ),
        }
        ctx.put(state.grant_key(number), grant)
        ctx.put(state.GRANT_COUNT, number + 1)
        ctx.put(state.dataset_grants_key(dataset["id"]), [*numbers, number])
        ctx.emit(
            "grant_issued",
            grant=number,
            dataset=dataset["id"],
            owner=dataset["owner"],
            consumer=consumer,
            purpose=grant["purpose"],
            consent_required=consent_required,
            until_height=grant["until_height"],
            until_ms=grant["until_ms"],
        )
        return grant

    @method("revoke")
    def revoke(self, ctx: Context, args: dict[str, Any]) -> None:
        """The owner revokes a grant: no access is logged under it after this transaction."""
        number, grant = _grant(ctx, args)
        ctx.require(
            identity_state.acts_for(ctx, ctx.caller) == grant["owner"],
            "not_owner",
            f"only an account of {grant['owner']} revokes its grants",
        )
        dataset = state.read_dataset(ctx.read_other, grant["dataset"])
        assert dataset is not None, "a grant names a registered dataset"
        _require_not_gateway(ctx, dataset["gateways"])
        ctx.require(grant["status"] == state.ACTIVE, "grant_revoked", "already revoked")
        grant["status"] = state.REVOKED
        grant["revoked"] = {"by": ctx.caller, "height": ctx.height, "time_ms": ctx.time_ms}
        ctx.put(state.grant_key(number), grant)
        ctx.emit("grant_revoked", grant=number, dataset=grant["dataset"], by=ctx.caller)

    # ------------------------------------------------------------------ consent

    @method("consent")
    def consent(self, ctx: Context, args: dict[str, Any]) -> None:
        """The data subject's own account consents to a grant that requires it."""
        number, grant = _subject_grant(ctx, args)
        ctx.require(grant["consent"] is None, "already_consented", f"grant {number} has consent")
        grant["consent"] = {"height": ctx.height, "time_ms": ctx.time_ms}
        ctx.put(state.grant_key(number), grant)
        ctx.emit("consent_given", grant=number, dataset=grant["dataset"], subject=ctx.caller)

    @method("withdraw_consent")
    def withdraw_consent(self, ctx: Context, args: dict[str, Any]) -> None:
        """The data subject withdraws its consent: no access under the grant from then on."""
        number, grant = _subject_grant(ctx, args)
        ctx.require(grant["consent"] is not None, "consent_missing", f"grant {number} has none")
        grant["consent"] = None
        grant["consent_withdrawn"] = {"height": ctx.height, "time_ms": ctx.time_ms}
        ctx.put(state.grant_key(number), grant)
        ctx.emit("consent_withdrawn", grant=number, dataset=grant["dataset"], subject=ctx.caller)

    # ------------------------------------------------------------------ the access log

    @method("log_access")
    def log_access(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """A gateway of the dataset's owner logs one fetch by `consumer_account` under
        `grant`, with the consumer's signed request (`params_digest`, `timestamp_ms`,
        `nonce`, `signature`) whose digest is `query_digest`: refused unless the request is
        signed with the account's current key, recent, and the grant is live now; returns
        the access record."""
        number, grant = _grant(ctx, args)
        dataset = state.read_dataset(ctx.read_other, grant["dataset"])
        assert dataset is not None, "a grant names a registered dataset"
        ctx.require(
            ctx.caller in dataset["gateways"]
            and identity_state.acts_for(ctx, ctx.caller) == dataset["owner"],
            "not_gateway",
            f"{ctx.caller} is no gateway of dataset {dataset['id']}",
        )
        consumer_account = arg_str(
            args, "consumer_account", max_length=identity_state.ACCOUNT_ID_LENGTH_MAX
        )
        ctx.require(
            identity_state.acts_for(ctx, consumer_account) == grant["consumer"],
            "not_consumer",
            f"{consumer_account} does not act for {grant['consumer']}, the grant's consumer",
        )
        query_digest = state.digest_arg(args, "query_digest")
        answer_digest = state.digest_arg(args, "answer_digest")
        rows = arg_int(args, "rows", minimum=0, maximum=state.ROWS_PER_ACCESS_MAX)
        _require_signed_request(ctx, args, grant, consumer_account, query_digest)
        problem = state.grant_problem(grant, dataset, ctx.height, ctx.time_ms)
        if problem is not None:
            ctx.fail(*problem)
        ctx.require(
            state.logged_access(ctx.read_other, query_digest) is None,
            "already_logged",
            "this query was logged already (a replayed request)",
        )
        access_number = state.access_count(ctx.read_other)
        access = {
            "n": access_number,
            "grant": number,
            "dataset": dataset["id"],
            "owner": dataset["owner"],
            "consumer": grant["consumer"],
            "consumer_account": consumer_account,
            "gateway": ctx.caller,
            "query_digest": query_digest,
            "answer_digest": answer_digest,
            "rows": rows,
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        grant["accesses"] += 1
        ctx.put(state.grant_key(number), grant)
        ctx.put(state.access_key(access_number), access)
        ctx.put(state.ACCESS_COUNT, access_number + 1)
        ctx.put(state.logged_key(query_digest), access_number)
        ctx.emit("access_logged", **access)
        return access


# ---------------------------------------------------------------------- helpers


def _require_signed_request(
    ctx: Context,
    args: dict[str, Any],
    grant: dict[str, Any],
    consumer_account: str,
    query_digest: str,
) -> None:
    """The consumer's own request stands behind the access: its signed bytes, rebuilt here as
    the gateway protocol builds them (consortia.types.datashare_request) for this grant's
    dataset, hash to `query_digest`, were signed no more than FRESHNESS_MS from the block's
    time, and verify under the signing key the account holds now (not one it replaced)."""
    params_digest = state.digest_arg(args, "params_digest")
    timestamp_ms = arg_int(args, "timestamp_ms", minimum=0, maximum=2**63 - 1)
    nonce = arg_hex(args, "nonce", (2 * request_format.NONCE_BYTES,))
    signature = arg_hex(args, "signature", state.SIGNATURE_HEX_LENGTHS)
    ctx.require(
        abs(ctx.time_ms - timestamp_ms) <= request_format.FRESHNESS_MS,
        "stale_request",
        f"the request was signed more than {request_format.FRESHNESS_MS} ms from block time",
    )
    signed = request_format.signed_bytes(
        chain_id=ctx.chain_id,
        genesis_hash=ctx.genesis_hash,
        consumer=consumer_account,
        dataset=grant["dataset"],
        grant=grant["n"],
        params_digest=params_digest,
        timestamp_ms=timestamp_ms,
        nonce=nonce,
    )
    ctx.require(
        ctx.hash(request_format.query_preimage(signed)) == query_digest,
        "query_digest_mismatch",
        "query_digest is not the digest of the signed request",
    )
    account = identity_state.account_record(ctx, consumer_account)
    assert account is not None, "an account that acts for a member exists"
    ctx.require(
        ctx.signature_valid(str(account["public_key"]), signed, signature),
        "bad_signature",
        f"the request is not signed with {consumer_account}'s current signing key",
    )


def _acting_member(ctx: Context) -> str:
    member = identity_state.acts_for(ctx, ctx.caller)
    ctx.require(
        member is not None,
        "not_authorised",
        "only an active institution account of a member in good standing acts for it",
    )
    assert member is not None
    return member


def _owned_dataset(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The dataset named by `dataset`, when the caller acts for its owner."""
    dataset_id = state.dataset_id_arg(args)
    dataset = state.read_dataset(ctx.read_other, dataset_id)
    if dataset is None:
        ctx.fail("unknown_dataset", f"no dataset {dataset_id!r}")
    ctx.require(
        identity_state.acts_for(ctx, ctx.caller) == dataset["owner"],
        "not_owner",
        f"only an account of {dataset['owner']} manages dataset {dataset_id}",
    )
    _require_not_gateway(ctx, dataset["gateways"])
    return dataset


def _require_not_gateway(ctx: Context, gateways: list[str]) -> None:
    """A gateway account only logs: a stolen gateway key grants, revokes and re-points
    nothing."""
    ctx.require(
        ctx.caller not in gateways,
        "gateway_cannot_manage",
        f"{ctx.caller} is a gateway of the dataset: gateways only log accesses",
    )


def _grant(ctx: Context, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    number = arg_int(args, "grant", minimum=0)
    grant = state.read_grant(ctx.read_other, number)
    if grant is None:
        ctx.fail("unknown_grant", f"no grant {number}")
    return number, grant


def _subject_grant(ctx: Context, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The grant named by `grant`, when it needs consent and the caller is its subject."""
    number, grant = _grant(ctx, args)
    ctx.require(grant["consent_required"], "consent_not_required", f"grant {number} needs none")
    ctx.require(
        ctx.caller == grant["subject"],
        "not_subject",
        f"only the data subject of grant {number} consents to it",
    )
    ctx.require(grant["status"] == state.ACTIVE, "grant_revoked", f"grant {number} is revoked")
    return number, grant


def _period(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """A grant's period: `from_height` (default now) and `until_height` in blocks, `from_ms`
    and `until_ms` in block time; it must end (an until), end after it starts and after now,
    and last at most GRANT_BLOCKS_MAX blocks and GRANT_MS_MAX ms from now."""
    from_height = state.optional_int(args, "from_height")
    from_height = ctx.height if from_height is None else from_height
    until_height = state.optional_int(args, "until_height")
    from_ms = state.optional_int(args, "from_ms")
    until_ms = state.optional_int(args, "until_ms")
    ctx.require(
        until_height is not None or until_ms is not None,
        "unbounded_grant",
        "a grant ends: give until_height or until_ms",
    )
    if until_height is not None:
        ctx.require(
            from_height <= until_height and ctx.height <= until_height,
            "bad_period",
            "until_height is before from_height or before now",
        )
        ctx.require(
            until_height - ctx.height <= state.GRANT_BLOCKS_MAX,
            "bad_period",
            f"a grant lasts at most {state.GRANT_BLOCKS_MAX} blocks",
        )
    if until_ms is not None:
        ctx.require(
            (from_ms is None or from_ms <= until_ms) and ctx.time_ms <= until_ms,
            "bad_period",
            "until_ms is before from_ms or before now",
        )
        ctx.require(
            until_ms - ctx.time_ms <= state.GRANT_MS_MAX,
            "bad_period",
            f"a grant lasts at most {state.GRANT_MS_MAX} ms",
        )
    return {
        "from_height": from_height,
        "until_height": until_height,
        "from_ms": from_ms,
        "until_ms": until_ms,
    }
