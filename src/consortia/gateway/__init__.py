"""The reference data gateway of the `datashare` contract (docs/datashare.md).

A data owner runs it beside its database: it serves the datasets it was started for, each
from one SQL query, to consumers that send a signed request (`protocol.py`). For each request
it checks the consumer's signature against the key registered on chain, the grant with
certified reads (the light client: it never trusts its node blindly), records the access on
chain (`datashare.log_access`, signed by the gateway's account, its certified receipt awaited)
and only then answers, with the rows sealed to the consumer's encryption key and the
regulator's escrow key (`consortia.privacy.envelope`).

Modules: `protocol.py` (the signed request, its digest, the freshness and replay window;
pure), `errors.py` (`RefusedError`: a code and an HTTP status), `chain.py` (certified reads and the
access record), `keys.py` (where encryption keys come from), `database.py` (the dataset
queries, read-only), `answer.py` (rows sealed in parts), `service.py` (the fetch pipeline and
its Starlette app). The consumer's side is `consortia.client.datashare`.

Must never log, print or answer a row, a query parameter, a DSN, a password or a key; never
answer before the access is on chain; never serve a dataset it was not started for.
"""
