-- Key rotations started through the API: their progress, for GET /api/v1/keys/rotate/{id}
-- on any replica. The rewraps themselves are events; this is only the operation's state.
CREATE TABLE key_rotations
(
    operation_id  uuid PRIMARY KEY,
    workspace_id  text        NOT NULL,
    requested_by  text        NOT NULL,
    -- running, succeeded or failed
    status        text        NOT NULL,
    total         integer     NOT NULL DEFAULT 0,
    done          integer     NOT NULL DEFAULT 0,
    rewrapped     integer     NOT NULL DEFAULT 0,
    from_version  integer,
    to_version    integer,
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    -- The running process writes here at least every few seconds; a running rotation whose
    -- heartbeat stopped belongs to a process that stopped.
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

CREATE INDEX key_rotations_workspace ON key_rotations (workspace_id, started_at DESC);

-- One running rotation per workspace, whichever replica was asked.
CREATE UNIQUE INDEX key_rotations_one_running ON key_rotations (workspace_id) WHERE status = 'running';
