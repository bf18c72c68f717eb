"""The `receivable/` namespace's shared pieces: keys, anchored documents, financing rules.

Owns what code outside receivable.py needs of the receivable contract's state and arguments:
the key of a receivable's record (`receivable_key`: clients spell it the same way, a test
holds them equal), the anchored documents (`documents_arg`, `document_arg`: per document a
name and its digest under the chain's suite, 32 bytes as lowercase hex), the receivable kinds
and order references, and the financing requirements governance sets per receivable kind
(`requirements` = {receivable kind: {"fact_kind", "value"}}, read through
`read_requirements`; `requirement_arg` is the one rule for a requirement, used by governance's
proposal check and by the contract itself), and `missing_fact`, the financing check; the
confidentiality policies governance sets per receivable kind (`confidentiality` = {receivable
kind: {"terms": "sealed"}}, read through `read_confidentiality`; `confidentiality_arg` is the
one rule for a policy) and `sealed_terms`, the one check of a sealed terms record (a `vault`
record) a receivable or an offer refers to.

Must never write state (only receivable.py does); never import a contract module but
oracle_state and vault_state (and what they import); never read but through a
`StateReader`. Digests are computed off the chain (the contract has no hash function): the
contract checks their form, the client checks a file against them (`consortia anchor
verify`).
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    HASH_HEX_LENGTH,
    ID_CHARACTERS,
    Context,
    ContractError,
    StateReader,
    arg_str,
    is_hex,
)
from consortia.execution.contracts import oracle_state, vault_state

CONTRACT: Final = "receivable"

DOCUMENTS_MAX: Final = 16  # documents anchored per receivable
DOCUMENT_NAME_LENGTH_MAX: Final = 64
# A document's name ("invoice", "contract-2024-17", "delivery_note.1"): no ":" (the separator).
DOCUMENT_NAME_CHARACTERS: Final = ID_CHARACTERS - frozenset(":")
LEGACY_DOCUMENT_NAME: Final = "documents"  # the one document of a `documents_digest`
KIND_LENGTH_MAX: Final = 32
KIND_DEFAULT: Final = "general"
KIND_CHARACTERS: Final = oracle_state.FACT_KIND_CHARACTERS
REQUIREMENTS: Final = "requirements"
REQUIREMENTS_MAX: Final = 32  # receivable kinds with a financing requirement
CONFIDENTIALITY: Final = "confidentiality"
CONFIDENTIALITY_MAX: Final = 32  # receivable kinds with a confidentiality policy
SEALED: Final = "sealed"  # a policy's terms: commercial terms and financing prices are sealed
OPTIONAL: Final = "optional"  # no policy: terms may be sealed, prices may be public
TERMS_POLICIES: Final = (SEALED, OPTIONAL)
PUBLIC: Final = "public"  # the face value is on the chain (the default)
COMMITTED: Final = "committed"  # only the sealed terms' commitment binds the face value
FACE_VALUES: Final = (PUBLIC, COMMITTED)


def receivable_key(receivable_id: str) -> str:
    """The key of a receivable's record."""
    return f"receivable/{receivable_id}"


def part_key(part_id: str) -> str:
    return f"part/{part_id}"


def terms_use_key(record_id: str) -> str:
    """Which receivable or part a sealed terms record is the terms of (each serves one)."""
    return f"terms_use/{record_id}"


# ---------------------------------------------------------------------- documents


def document_arg(text: Any, name: str = "document") -> tuple[str, str]:
    """One document as "<name>:<digest>": (name, digest), or `bad_argument`."""
    if not isinstance(text, str):
        raise ContractError("bad_argument", f"{name} is text: <name>:<64 hex digest>")
    label, separator, digest = text.partition(":")
    if not (
        separator
        and 0 < len(label) <= DOCUMENT_NAME_LENGTH_MAX
        and set(label) <= DOCUMENT_NAME_CHARACTERS
    ):
        raise ContractError(
            "bad_argument",
            f"{name} is <name>:<digest>, the name up to {DOCUMENT_NAME_LENGTH_MAX} letters,"
            " digits and _ . -",
        )
    _require_digest(digest, name)
    return label, digest


def documents_arg(args: dict[str, Any]) -> list[tuple[str, str]]:
    """The documents a receivable is issued with: `documents` (a list of "<name>:<digest>",
    or one such text), 1 to DOCUMENTS_MAX, names distinct; or, for callers written before
    documents had names, `documents_digest` (one digest) as one document named "documents"."""
    given = args.get("documents")
    legacy = args.get("documents_digest")
    if given is None and legacy is not None:
        if not isinstance(legacy, str):
            raise ContractError("bad_argument", "documents_digest is a digest in hex")
        _require_digest(legacy, "documents_digest")
        return [(LEGACY_DOCUMENT_NAME, legacy)]
    if legacy is not None:
        raise ContractError("bad_argument", "give documents or documents_digest, not both")
    entries = [given] if isinstance(given, str) else given
    if not isinstance(entries, list) or not 0 < len(entries) <= DOCUMENTS_MAX:
        raise ContractError(
            "bad_argument", f"documents is a list of 1 to {DOCUMENTS_MAX} <name>:<digest>"
        )
    documents = [document_arg(entry, "documents") for entry in entries]
    names = [label for label, _ in documents]
    if len(set(names)) != len(names):
        raise ContractError("duplicate_document", "two documents have the same name")
    return documents


def _require_digest(digest: str, name: str) -> None:
    if not (len(digest) == HASH_HEX_LENGTH and is_hex(digest)):
        raise ContractError(
            "bad_argument",
            f"{name}: a digest is {HASH_HEX_LENGTH} lowercase hex digits (SHA-256 or SM3, the"
            " chain's suite)",
        )


def anchored(record: dict[str, Any], name: str, digest: str, by: str, height: int) -> None:
    """Append a document to a receivable's record (the caller checked the bounds)."""
    entry = {"name": name, "digest": digest, "by": by, "height": height}
    record["documents"] = [*record["documents"], entry]


# ---------------------------------------------------------------------- kinds and orders


def kind_arg(args: dict[str, Any], name: str = "kind") -> str:
    """A receivable kind ("goods", "services"); `kind` absent on issue means "general"."""
    value = arg_str(args, name, max_length=KIND_LENGTH_MAX)
    if not set(value) <= KIND_CHARACTERS:
        raise ContractError("bad_argument", f"{name} uses only a-z, 0-9 and _ . -")
    return value


def order_ref_arg(args: dict[str, Any], default: str) -> str:
    """The order (or contract) the receivable pays for: the subject of the facts about it."""
    if args.get("order_ref") is None:
        return default
    return oracle_state.subject_arg(args, "order_ref")


# ---------------------------------------------------------------------- financing requirements


def read_requirements(read: StateReader) -> dict[str, dict[str, str]]:
    """{receivable kind: {"fact_kind", "value"}}: what each kind needs before financing."""
    value = read(CONTRACT, REQUIREMENTS)
    return dict(value) if isinstance(value, dict) else {}


def requirement_arg(ctx: Context, args: dict[str, Any]) -> dict[str, str]:
    """A requirement: `receivable_kind` needs the fact `fact_kind` (registered with the
    oracles) about its order to be final with `value` before any part is financed."""
    receivable_kind = kind_arg(args, "receivable_kind")
    fact_kind = oracle_state.registered_kind_arg(ctx, args)
    value = oracle_state.value_arg(args)
    requirements = read_requirements(ctx.read_other)
    ctx.require(
        receivable_kind in requirements or len(requirements) < REQUIREMENTS_MAX,
        "too_many_requirements",
        f"at most {REQUIREMENTS_MAX} receivable kinds have a financing requirement",
    )
    return {"receivable_kind": receivable_kind, "fact_kind": fact_kind, "value": value}


def required_kind_arg(ctx: Context, args: dict[str, Any]) -> str:
    """`receivable_kind`, naming a kind that has a requirement (else `unknown_requirement`)."""
    receivable_kind = kind_arg(args, "receivable_kind")
    ctx.require(
        receivable_kind in read_requirements(ctx.read_other),
        "unknown_requirement",
        f"receivable kind {receivable_kind!r} has no financing requirement",
    )
    return receivable_kind


def kinds_requiring(read: StateReader, fact_kind: str) -> list[str]:
    """The receivable kinds whose financing needs a fact of `fact_kind`."""
    return sorted(k for k, r in read_requirements(read).items() if r["fact_kind"] == fact_kind)


def missing_fact(
    read: StateReader, record: dict[str, Any], requirements: dict[str, dict[str, str]]
) -> ContractError | None:
    """Why a part of this receivable may not be financed yet, or None when it may: its kind's
    requirement (among `requirements`, as `read_requirements` gives them) names a fact about
    its order that is not final (`fact_required`) or is final with another value
    (`fact_mismatch`)."""
    kind = record.get("kind", KIND_DEFAULT)
    requirement = requirements.get(kind)
    if requirement is None:
        return None
    fact_kind, expected = requirement["fact_kind"], requirement["value"]
    subject = record.get("order_ref", "")
    value = oracle_state.final_value(read, fact_kind, subject)
    if value is None:
        return ContractError(
            "fact_required",
            f"a {kind} receivable is financed only once the oracles confirm"
            f" {fact_kind} of {subject} as {expected!r}; that fact is not final",
        )
    if value != expected:
        return ContractError(
            "fact_mismatch",
            f"the oracles confirmed {fact_kind} of {subject} as {value!r}, not {expected!r}",
        )
    return None


# ---------------------------------------------------------------------- confidentiality


def read_confidentiality(read: StateReader) -> dict[str, dict[str, str]]:
    """{receivable kind: {"terms": "sealed", "face_value": "public" | "committed"}}: the kinds
    whose terms must be sealed, and whether their face value is too."""
    value = read(CONTRACT, CONFIDENTIALITY)
    return dict(value) if isinstance(value, dict) else {}


def terms_sealed(read: StateReader, kind: str) -> bool:
    """Whether governance's policy seals the terms and financing prices of `kind`."""
    policy = read_confidentiality(read).get(kind)
    return policy is not None and policy["terms"] == SEALED


def face_value_committed(read: StateReader, kind: str) -> bool:
    """Whether governance's policy hides the face value of `kind` behind the sealed terms."""
    policy = read_confidentiality(read).get(kind)
    return policy is not None and policy.get("face_value") == COMMITTED


def confidentiality_arg(ctx: Context, args: dict[str, Any]) -> dict[str, str]:
    """A policy: `receivable_kind` and `terms` ("sealed": its commercial terms are a sealed
    vault record and its parts are financed only confidentially; "optional": no policy), and
    `face_value` ("public", the default, or "committed": no amount on the chain, the sealed
    terms hold it; only with sealed terms)."""
    receivable_kind = kind_arg(args, "receivable_kind")
    terms = args.get("terms")
    ctx.require(
        terms in TERMS_POLICIES, "bad_argument", f"terms is one of {', '.join(TERMS_POLICIES)}"
    )
    face_value = args.get("face_value", PUBLIC)
    ctx.require(
        face_value in FACE_VALUES,
        "bad_argument",
        f"face_value is one of {', '.join(FACE_VALUES)}",
    )
    ctx.require(
        face_value == PUBLIC or terms == SEALED,
        "bad_argument",
        "a committed face value is held in sealed terms: terms must be sealed",
    )
    policies = read_confidentiality(ctx.read_other)
    ctx.require(
        receivable_kind in policies or terms == OPTIONAL or len(policies) < CONFIDENTIALITY_MAX,
        "too_many_policies",
        f"at most {CONFIDENTIALITY_MAX} receivable kinds have a confidentiality policy",
    )
    return {"receivable_kind": receivable_kind, "terms": str(terms), "face_value": str(face_value)}


def sealed_terms(
    ctx: Context, args: dict[str, Any], name: str, owner: str, readers: tuple[str, ...]
) -> dict[str, str]:
    """The sealed terms record the argument `name` names: a `vault` record stored by `owner`,
    readable by each of `readers` (the regulator always is), serving nothing else yet.
    Returns {"record", "commitment"}."""
    record_id = vault_state.record_id_arg(args, name)
    record = vault_state.read_vault_record(ctx.read_other, record_id)
    ctx.require(record is not None, "unknown_record", f"no vault record {record_id!r}")
    assert record is not None
    ctx.require(
        record["owner"] == owner,
        "not_record_owner",
        f"the terms are {owner}'s to seal; {record_id} was stored by {record['owner']}",
    )
    unreadable = [party for party in readers if not vault_state.readable_by(record, party)]
    ctx.require(
        not unreadable,
        "terms_not_readable",
        f"{', '.join(unreadable)} cannot read {record_id}: seal it to them",
    )
    ctx.require(
        not ctx.has(terms_use_key(record_id)),
        "terms_in_use",
        f"{record_id} is the terms of another receivable or financing",
    )
    return {"record": record_id, "commitment": str(record["commitment"])}
