-- consortia outbox, schema version 1 (docs/outbox.md, "The tables").
-- Applied once, in one transaction, by `consortia.client.outbox.migrate` (the business
-- system's deployment or the relay at its start); never edit an applied migration: add the
-- next one.

-- One row per business intent. The business system inserts it (state 'pending') in the
-- same transaction as its own change; the relay alone moves it on:
--   pending -> signed     the transaction signed, its bytes and hash stored (committed
--                         BEFORE anything is sent)
--   signed -> committed   in a block with an ok receipt (height, index, receipt recorded)
--   signed -> failed      in a block with a failed receipt, or refused at admission for
--                         good (code, message recorded); never retried
--   signed -> pending     the signed transaction is provably never executed (expired, or
--                         its nonce spent by another transaction): signed again
CREATE TABLE outbox_intents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_key text NOT NULL UNIQUE CHECK (length(business_key) BETWEEN 1 AND 200),
    account text NOT NULL,
    contract text NOT NULL,
    method text NOT NULL,
    args jsonb NOT NULL,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'signed', 'committed', 'failed')),
    signings integer NOT NULL DEFAULT 0,
    nonce bigint,
    expiry_height bigint,
    tx_hash text,
    signed_tx bytea,
    submissions integer NOT NULL DEFAULT 0,
    last_error text,
    height bigint,
    tx_index integer,
    code text,
    message text,
    receipt jsonb,
    nonce_spent boolean,
    created_at timestamptz NOT NULL DEFAULT now(),
    signed_at timestamptz,
    decided_at timestamptz,
    CHECK (state <> 'signed' OR (tx_hash IS NOT NULL AND signed_tx IS NOT NULL
                                 AND nonce IS NOT NULL AND expiry_height IS NOT NULL)),
    CHECK (state NOT IN ('committed', 'failed') OR (code IS NOT NULL AND decided_at IS NOT NULL))
);
CREATE INDEX outbox_intents_work ON outbox_intents (state, account, id)
    WHERE state IN ('pending', 'signed');
-- At most one live signed transaction per account and nonce.
CREATE UNIQUE INDEX outbox_intents_live_nonce ON outbox_intents (account, nonce)
    WHERE state = 'signed';
CREATE INDEX outbox_intents_tx_hash ON outbox_intents (tx_hash);

-- Every transaction the relay ever signed for an intent, and what became of it: the link
-- from a business key to the chain (join on tx_hash with the chain, or the mirror's tables).
CREATE TABLE outbox_transactions (
    tx_hash text PRIMARY KEY,
    intent_id bigint NOT NULL REFERENCES outbox_intents (id),
    account text NOT NULL,
    nonce bigint NOT NULL,
    expiry_height bigint NOT NULL,
    signed_tx bytea NOT NULL,
    fate text NOT NULL DEFAULT 'live'
        CHECK (fate IN ('live', 'dead', 'committed', 'failed', 'refused')),
    reason text,
    signed_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz
);
CREATE INDEX outbox_transactions_intent ON outbox_transactions (intent_id);
