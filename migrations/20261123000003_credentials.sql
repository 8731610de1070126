-- One row per stored credential, whatever family stored it: lists of families B–E in one
-- indexed query, with who created it and when.
CREATE TABLE credential_view
(
    credential_id   uuid PRIMARY KEY,
    -- The integer id of APIs that number keys (seed 003); recorded in the event.
    number          bigint UNIQUE,
    aggregate_id    text        NOT NULL,
    workspace_id    text        NOT NULL,
    owner           text        NOT NULL,
    name            text        NOT NULL,
    -- The name as uniqueness sees it (credential_names.name_key).
    name_key        text        NOT NULL,
    provider        text        NOT NULL,
    endpoint        text,
    hint            text        NOT NULL,
    access_key_hint text,
    created_by      text,
    -- The last test against the provider: null until tested.
    validated_ok    boolean,
    validated_at    timestamptz,
    validation_note text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX credential_view_workspace ON credential_view (workspace_id, owner, created_at DESC);

-- Credential names, unique per workspace regardless of case and owner. A name is claimed here
-- before the events that use it are appended, so two replicas racing for one name cannot both
-- win; it is released when the command fails, or the credential is renamed or removed.
CREATE TABLE credential_names
(
    workspace_id  text        NOT NULL,
    name_key      text        NOT NULL,
    credential_id uuid        NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, name_key)
);
CREATE INDEX credential_names_credential ON credential_names (credential_id);

-- Source of those integer ids.
CREATE SEQUENCE credential_numbers;
