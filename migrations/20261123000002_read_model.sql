-- How far each projection has applied each aggregate's events; catch-up starts from here.
CREATE TABLE projection_offsets
(
    projection    text   NOT NULL,
    aggregate_id  text   NOT NULL,
    last_sequence bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (projection, aggregate_id)
);

-- One document per configuration: what GET /api/v1/get/ai-model-config returns, in one lookup.
CREATE TABLE config_view
(
    aggregate_id  text PRIMARY KEY,
    workspace_id  text        NOT NULL,
    owner         text        NOT NULL,
    last_sequence bigint      NOT NULL,
    view          jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX config_view_workspace ON config_view (workspace_id, owner);

-- The audit trail: who changed what, with keys reduced to their hints.
CREATE TABLE audit_log
(
    -- Order of recording: per aggregate it follows the event sequence, because events are
    -- projected in order under the aggregate's offset lock; timestamps alone need not.
    position     bigserial   NOT NULL UNIQUE,
    aggregate_id text        NOT NULL,
    sequence     bigint      NOT NULL,
    workspace_id text        NOT NULL,
    owner        text        NOT NULL,
    event_type   text        NOT NULL,
    actor        text,
    request_id   text,
    trace_id     text,
    occurred_at  timestamptz NOT NULL,
    details      jsonb       NOT NULL,
    PRIMARY KEY (aggregate_id, sequence)
);
CREATE INDEX audit_log_newest_first ON audit_log (workspace_id, position DESC);
