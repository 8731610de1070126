-- Credentials with a stream of their own (families B and D) are not in any configuration's
-- document, so the credential view carries what their operations read: the secret's
-- ciphertext (tests against the provider, resolving with the keys:ciphertext scope).
ALTER TABLE credential_view ADD COLUMN secret text;

-- Until now every credential lived in its configuration's stream and document.
UPDATE credential_view c
   SET secret = v.view -> 'credentials' -> (c.credential_id::text) ->> 'secret'
  FROM config_view v
 WHERE v.aggregate_id = c.aggregate_id;

-- The newest key of an owner for a provider (families E and resolve), without reading the
-- owner's other keys.
CREATE INDEX credential_view_provider ON credential_view (workspace_id, owner, provider, created_at DESC);
