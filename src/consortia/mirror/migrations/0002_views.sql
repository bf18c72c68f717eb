-- consortia mirror, schema version 2: typed views over the tables of version 1, for the
-- questions supervisors ask most (docs/mirror.md, "Views"). Amounts stay exact (numeric).

-- Every asset transfer that committed, with its block's time.
CREATE VIEW transfers AS
SELECT e.height,
       b.block_time,
       e.tx_hash,
       e.tx_index,
       e.event_index,
       e.attributes ->> 'currency' AS currency,
       (e.attributes ->> 'amount')::numeric AS amount,
       e.attributes ->> 'source' AS source,
       e.attributes ->> 'target' AS target
FROM events e
JOIN blocks b USING (height)
WHERE e.contract = 'asset' AND e.name = 'transferred';

-- Every account's balance per currency now (asset's balance/<currency>/<account>).
CREATE VIEW balances AS
SELECT split_part(key, '/', 3) AS account,
       split_part(key, '/', 2) AS currency,
       (value #>> '{}')::numeric AS balance,
       height AS since_height
FROM state_current
WHERE contract = 'asset' AND key LIKE 'balance/%';

-- Every account now: who sponsors it (its bank), its kind and status (identity's account/<id>).
CREATE VIEW accounts AS
SELECT substr(key, length('account/') + 1) AS account,
       value ->> 'sponsor' AS sponsor,
       coalesce(value ->> 'kind', 'institution') AS kind,
       value ->> 'status' AS status,
       (value ->> 'nonce')::numeric AS nonce,
       height AS since_height
FROM state_current
WHERE contract = 'identity' AND key LIKE 'account/%';

-- Every part of every receivable now (receivable's part/<id>): who owes it, who holds it,
-- and, once financed, by which bank at what price.
CREATE VIEW receivable_parts AS
SELECT substr(key, length('part/') + 1) AS part,
       value ->> 'receivable' AS receivable,
       value ->> 'debtor' AS debtor,
       value ->> 'holder' AS holder,
       (value ->> 'amount')::numeric AS amount,
       value ->> 'currency' AS currency,
       value ->> 'status' AS status,
       (value ->> 'maturity_height')::bigint AS maturity_height,
       value ->> 'financed_by' AS financed_by,
       (value ->> 'price')::numeric AS price,
       (value ->> 'financed_height')::bigint AS financed_height,
       height AS since_height
FROM state_current
WHERE contract = 'receivable' AND key LIKE 'part/%';
