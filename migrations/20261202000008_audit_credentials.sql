-- History answers "who changed the OpenAI key last week" by credential and provider: every
-- credential entry names its credential and provider in columns the filters use, and carries
-- the provider, the name and (for a new secret) the hint before it in its details.
ALTER TABLE audit_log ADD COLUMN credential_id uuid, ADD COLUMN provider text;

UPDATE audit_log
   SET credential_id = (details ->> 'credential_id')::uuid
 WHERE event_type LIKE 'Credential%' AND details ? 'credential_id';

CREATE INDEX audit_log_credential_newest_first
    ON audit_log (workspace_id, credential_id, position DESC) WHERE credential_id IS NOT NULL;
CREATE INDEX audit_log_provider_newest_first
    ON audit_log (workspace_id, provider, position DESC) WHERE provider IS NOT NULL;
CREATE INDEX audit_log_actor_newest_first ON audit_log (workspace_id, actor, position DESC);

-- Models and task assignments name the provider they were added for.
UPDATE audit_log
   SET provider = details ->> 'provider'
 WHERE event_type IN ('ModelAdded', 'TaskAssigned');

-- Entries written before: each fact as the credential's own earlier entries left it.
UPDATE audit_log a
   SET provider = (SELECT b.details ->> 'provider'
                     FROM audit_log b
                    WHERE b.workspace_id = a.workspace_id AND b.credential_id = a.credential_id
                      AND b.event_type IN ('CredentialAdded', 'CredentialProviderChanged')
                      AND b.position <= a.position
                    ORDER BY b.position DESC
                    LIMIT 1)
 WHERE a.credential_id IS NOT NULL;

UPDATE audit_log a
   SET details = a.details || jsonb_strip_nulls(jsonb_build_object(
           'provider', a.provider,
           'name', (SELECT b.details ->> 'name'
                      FROM audit_log b
                     WHERE b.workspace_id = a.workspace_id AND b.credential_id = a.credential_id
                       AND b.event_type IN ('CredentialAdded', 'CredentialRenamed')
                       AND b.position <= a.position
                     ORDER BY b.position DESC
                     LIMIT 1),
           'previous_hint', CASE WHEN a.event_type = 'CredentialSecretReplaced' THEN
                   (SELECT b.details ->> 'hint'
                      FROM audit_log b
                     WHERE b.workspace_id = a.workspace_id AND b.credential_id = a.credential_id
                       AND b.event_type IN ('CredentialAdded', 'CredentialSecretReplaced')
                       AND b.position < a.position
                     ORDER BY b.position DESC
                     LIMIT 1) END))
 WHERE a.credential_id IS NOT NULL;
