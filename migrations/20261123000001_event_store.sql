-- The event log, in the layout postgres-es reads and writes.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- One snapshot per aggregate, a cache over the log: losing it only costs a longer replay.
CREATE TABLE aggregate_snapshots
(
    aggregate_type text                              NOT NULL,
    aggregate_id   text                              NOT NULL,
    last_sequence  bigint CHECK (last_sequence >= 0) NOT NULL,
    -- Shape of the payload; a snapshot of another shape is ignored and the log replayed.
    schema_version integer                           NOT NULL,
    payload        jsonb                             NOT NULL,
    taken_at       timestamptz                       NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
