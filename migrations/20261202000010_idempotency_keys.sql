-- A write sent with an Idempotency-Key, per caller and key: what the request was (a digest of
-- its method, path, workspace and body) and, once answered, the answer, replayed to a retry.
-- Kept at least 24 hours.
CREATE TABLE idempotency_keys
(
    caller      text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    -- NULL while the first request is being answered.
    status      smallint,
    headers     jsonb,
    body        bytea,
    PRIMARY KEY (caller, key)
);

CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at);

-- The events a keyed request appended carry its key: the proof that a request whose answer was
-- lost (the process died between commit and answer) was applied, and must not be applied again.
CREATE INDEX events_idempotency_key ON events ((metadata ->> 'idempotency_key'))
    WHERE metadata ->> 'idempotency_key' IS NOT NULL;
