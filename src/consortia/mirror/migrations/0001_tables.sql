-- consortia mirror, schema version 1: the mirrored chain's tables (docs/mirror.md, "Tables").
-- Applied once, in one transaction, by the mirror itself (migrations.py); never edit an
-- applied migration: add the next one.
-- Hashes and ids are lowercase hex text (as the node's API shows them); money and every
-- other quantity are integers (bigint, or numeric(20, 0) where a value may exceed 2^63 - 1);
-- contract values are jsonb (bytes as base64, as the API shows them) beside their exact
-- canonical bytes (raw).

CREATE TABLE mirror_progress (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    chain_id text NOT NULL,
    genesis_hash text NOT NULL,
    height bigint NOT NULL CHECK (height >= 0),
    block_hash text NOT NULL,
    state_root text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blocks (
    height bigint PRIMARY KEY CHECK (height >= 1),
    block_hash text NOT NULL UNIQUE,
    parent_hash text NOT NULL,
    epoch bigint NOT NULL,
    round bigint NOT NULL,
    author text NOT NULL,
    timestamp_ms bigint NOT NULL,
    block_time timestamptz,
    tx_count integer NOT NULL,
    payload_root text NOT NULL,
    state_root text NOT NULL,
    receipts_root text NOT NULL,
    next_epoch jsonb,
    certified boolean NOT NULL,
    certificate bytea,
    header bytea NOT NULL
);
CREATE INDEX blocks_time ON blocks (block_time);

CREATE TABLE transactions (
    height bigint NOT NULL,
    tx_index integer NOT NULL,
    tx_hash text NOT NULL,
    sender text,
    public_key text,
    nonce numeric(20, 0),
    contract text,
    contract_version integer,
    method text,
    args jsonb,
    expiry_height numeric(20, 0),
    raw bytea NOT NULL,
    PRIMARY KEY (height, tx_index)
);
CREATE INDEX transactions_hash ON transactions (tx_hash);
CREATE INDEX transactions_sender ON transactions (sender, height);
CREATE INDEX transactions_call ON transactions (contract, method, height);

CREATE TABLE receipts (
    height bigint NOT NULL,
    tx_index integer NOT NULL,
    tx_hash text NOT NULL,
    ok boolean NOT NULL,
    code text NOT NULL,
    message text NOT NULL,
    gas_used bigint NOT NULL,
    result jsonb,
    PRIMARY KEY (height, tx_index)
);
CREATE INDEX receipts_hash ON receipts (tx_hash);
CREATE INDEX receipts_failed ON receipts (code, height) WHERE NOT ok;

CREATE TABLE events (
    height bigint NOT NULL,
    event_index integer NOT NULL,
    tx_index integer NOT NULL,
    tx_hash text NOT NULL,
    contract text NOT NULL,
    name text NOT NULL,
    attributes jsonb NOT NULL,
    PRIMARY KEY (height, event_index)
);
CREATE INDEX events_name ON events (contract, name, height);
CREATE INDEX events_transfer_amount ON events (((attributes ->> 'amount')::numeric))
    WHERE contract = 'asset' AND name = 'transferred';

CREATE TABLE state_changes (
    contract text NOT NULL,
    key text NOT NULL,
    height bigint NOT NULL,
    value jsonb,
    raw bytea,
    deleted boolean NOT NULL,
    PRIMARY KEY (contract, key, height),
    CHECK (deleted = (raw IS NULL))
);
CREATE INDEX state_changes_height ON state_changes (height);

CREATE TABLE state_current (
    contract text NOT NULL,
    key text NOT NULL,
    height bigint NOT NULL,
    value jsonb NOT NULL,
    raw bytea NOT NULL,
    PRIMARY KEY (contract, key)
);
