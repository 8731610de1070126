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
    -- Order of recording within the workspace, from audit_positions (see there).
    position     bigint      NOT NULL,
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
CREATE UNIQUE INDEX audit_log_newest_first ON audit_log (workspace_id, position DESC);
CREATE INDEX audit_log_owner_newest_first ON audit_log (workspace_id, owner, position DESC);

-- The last audit position handed out per workspace. Taking positions by updating this row,
-- inside the projecting transaction, makes commit order and position order the same, so a
-- newest-first reader paging by position never skips an entry committed late (a sequence
-- would hand out numbers in one order and commit them in another).
CREATE TABLE audit_positions
(
    workspace_id  text PRIMARY KEY,
    last_position bigint NOT NULL
);
