"""The OpenAPI 3.1 document of the node's HTTP API, served at /openapi.json.

Written out by hand beside the routes (`app.py`), so it describes exactly what the node
answers; a test checks that every route is in it and that the examples it names validate.
Must never describe a route the app does not serve.
"""

from __future__ import annotations

from typing import Any, Final

_ERROR: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string"},
            },
        }
    },
}
_HEX: Final = {"type": "string", "pattern": "^[0-9a-f]*$"}
_SIGNED: Final = {
    "type": "object",
    "required": ["body", "signature"],
    "properties": {
        "body": {
            "type": "object",
            "required": [
                "chain_id",
                "sender",
                "public_key",
                "nonce",
                "contract",
                "contract_version",
                "method",
                "args",
                "expiry_height",
            ],
            "properties": {
                "chain_id": {"type": "string"},
                "sender": {"type": "string"},
                "public_key": _HEX,
                "nonce": {"type": "integer", "minimum": 0},
                "contract": {"type": "string"},
                "contract_version": {"type": "integer", "minimum": 1},
                "method": {"type": "string"},
                "args": {"type": "object"},
                "expiry_height": {"type": "integer", "minimum": 0},
            },
        },
        "signature": _HEX,
    },
    "description": "A signed transaction: the signature covers the canonical encoding of the "
    "body under the chain's genesis hash (docs/crypto.md). Also accepted as its canonical "
    "binary encoding with Content-Type application/msgpack.",
}

_BATCH_RESULT: Final = {
    "oneOf": [
        {
            "type": "object",
            "required": ["tx_hash", "status"],
            "properties": {"tx_hash": _HEX, "status": {"const": "pending"}},
            "description": "admitted: pending until committed",
        },
        {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _ERROR["properties"]["error"], "tx_hash": _HEX},  # type: ignore[index]
            "description": "refused, with the code POST /v1/tx would answer (tx_hash when "
            "the node could name the transaction); nothing changed for it",
        },
    ]
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "an error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def _get(
    summary: str, *parameters: dict[str, Any], errors: tuple[int, ...] = (400, 404)
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": list(parameters),
            "responses": {"200": _ok(summary), **_errors(*errors)},
        }
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_HEIGHT: Final = {
    "name": "height",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "a committed height (default: the latest); 410 height_unavailable when the"
    " node no longer keeps (or, since it restarted, never had) the state of that height",
}


_PROOF: Final = {
    "name": "proof",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false"]},
    "description": "true: add the receipt's proof against the block's certified execution header",
}

_ENCODED: Final = {
    "name": "encoded",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false"]},
    "description": "true: add `encoded`, the block's canonical encoding (hex), whose header"
    " hashes to the block id an execution certificate names (what a verifying mirror checks)",
}

_STATE_PROOF: Final = {
    **_PROOF,
    "description": "true: answer at the latest certified height (or `height`, which must be"
    " certified: 409 not_certified otherwise), with `proof`: the execution header, its"
    " certificate and, per state key, the raw value and its sparse Merkle proof under the"
    " header's state root",
}


_QUERY_TEXT: Final = {"type": "string", "minLength": 1, "maxLength": 128}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or _QUERY_TEXT,
        "description": description,
    }


def _stream(summary: str, message: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    resume = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the id of the last message seen (a reconnecting client): the stream "
        "resumes right after it, and the header wins over `from`; 400 bad_last_event_id when "
        "malformed",
    }
    start = _query(
        "from",
        "the first height to send (0 and 1 are the first block; beyond the tip, the stream "
        "waits for it); default: the next block to commit",
        {"type": "integer", "minimum": 0},
    )
    return {
        "get": {
            "summary": summary,
            "parameters": [start, *parameters, resume],
            "responses": {
                "200": {
                    "description": "a server-sent event stream, for ever: history from the "
                    "store, then live commits; `: keep-alive` comments every 15 s; " + message,
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(400, 503),
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    signed_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SignedTransaction"}},
            "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "consortia node API",
            "version": "1",
            "description": "Submit signed transactions, follow them to commit, read blocks, "
            "accounts and contract state, and watch the node.",
        },
        "paths": {
            "/v1/tx": {
                "post": {
                    "summary": "Submit a signed transaction",
                    "requestBody": signed_body,
                    "responses": {
                        "202": _ok(
                            "admitted: pending until committed",
                            {
                                "type": "object",
                                "properties": {"tx_hash": _HEX, "status": {"const": "pending"}},
                            },
                        ),
                        **_errors(400, 409, 413, 415, 503),
                    },
                }
            },
            "/v1/txs": {
                "post": {
                    "summary": "Submit many signed transactions at once (at most 2,000, a body "
                    "of at most 8 MiB), admitted in one mempool call and passed on to the peers "
                    "together",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "maxItems": 2000,
                                    "items": {"$ref": "#/components/schemas/SignedTransaction"},
                                }
                            },
                            "application/msgpack": {
                                "schema": {"type": "string", "format": "binary"},
                                "description": "a msgpack array of canonical transaction "
                                "encodings (each a msgpack bin)",
                            },
                        },
                    },
                    "responses": {
                        "200": _ok(
                            "one result per transaction, in the order sent",
                            {
                                "type": "object",
                                "required": ["results"],
                                "properties": {
                                    "results": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/BatchResult"},
                                    }
                                },
                            },
                        ),
                        **_errors(400, 413, 415),
                    },
                }
            },
            "/v1/tx/{tx_hash}": _get(
                "A transaction: pending, committed or failed, with its receipt; with "
                "proof=true also `proof`: the receipt's canonical encoding, its Merkle proof "
                "against the receipts root and the block's execution certificate (hex), "
                "409 not_committed or not_certified until there is one",
                _path("tx_hash", "64 hex digits"),
                _PROOF,
                errors=(400, 404, 409),
            ),
            "/v1/views": {
                "post": {
                    "summary": "A signed read request: a contract call run as its signer "
                    "against committed state, nothing kept, no nonce spent",
                    "parameters": [_HEIGHT],
                    "requestBody": signed_body,
                    "responses": {
                        "200": _ok("the call's outcome"),
                        **_errors(400, 404, 410, 413, 415),
                    },
                }
            },
            "/v1/blocks/{height}": _get(
                "A committed block with its certificate",
                _path("height", "a height or 'latest'"),
                _ENCODED,
            ),
            "/v1/blocks/{height}/receipts": _get(
                "Each transaction of a committed block, in order: its hash, whether it "
                "succeeded, its code",
                _path("height", "a height"),
            ),
            "/v1/blocks/{height}/certificate": _get(
                "The execution certificate of a committed block: its execution header (block "
                "hash, state root, receipts root) signed by a quorum of the validators of its "
                "epoch; 404 not_certified until this node holds one",
                _path("height", "a height"),
            ),
            "/v1/epochs/{epoch}/proof": _get(
                "The proof that an epoch ended (canonical encoding, hex): its last block's "
                "header naming the next validator set, and the QCs that committed it",
                _path("epoch", "the epoch that ended"),
            ),
            "/v1/subscribe/blocks": _stream(
                "Follow committed blocks (server-sent events)",
                "each message `event: block`, `id: <height>`, data {height, hash, parent_hash,"
                " epoch, round, timestamp_ms, tx_count, state_root (null when the node no longer"
                " knows it)}. 400 bad_argument or unknown_parameter; 503 too_many_subscribers",
            ),
            "/v1/subscribe/events": _stream(
                "Follow contract events (server-sent events), filtered",
                "each message `event: chain_event`, `id: <height>:<index>` (index: the event's"
                " place among all events of its block), data {height, index, tx_hash, tx_index,"
                " contract, name, attributes}. 400 bad_argument or unknown_parameter; 503"
                " too_many_subscribers",
                _query("contract", "only events of this contract"),
                _query("event", "only events of this name"),
                _query(
                    "account",
                    "only events that name this account under one of the attributes account,"
                    " bank, by, debtor, holder, member, proposer, seller, source, sponsor,"
                    " target, to",
                ),
            ),
            "/v1/status": _get("The node's view of the chain", errors=(400,)),
            "/v1/accounts/{account_id}": _get(
                "An account: balances per currency, nonce, status, roles",
                _path("account_id", "the account id"),
                _STATE_PROOF,
                errors=(400, 404, 409),
            ),
            "/v1/state/{contract}/{key}": _get(
                "A contract's stored value at a key",
                _path("contract", "the contract name"),
                _path("key", "the key in its namespace"),
                _HEIGHT,
                _STATE_PROOF,
                errors=(400, 404, 409, 410),
            ),
            "/v1/nonces": {
                "post": {
                    "summary": "The next nonce of many accounts (1 to 1,000 ids of at most 128 "
                    "characters) at the latest committed height; null for no such account",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["accounts"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "accounts": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 1000,
                                            "items": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": 128,
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok(
                            "the height read at, and each account's next nonce",
                            {
                                "type": "object",
                                "required": ["height", "nonces"],
                                "properties": {
                                    "height": {"type": "integer"},
                                    "nonces": {
                                        "type": "object",
                                        "additionalProperties": {"type": ["integer", "null"]},
                                    },
                                },
                            },
                        ),
                        **_errors(400, 413),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3.1")}}
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "SignedTransaction": _SIGNED,
                "BatchResult": _BATCH_RESULT,
            }
        },
    }
