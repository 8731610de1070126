-- A test that could not reach the provider (or that it failed for a reason of its own) says
-- nothing about the key: only a refusal (401 or 403) marks a key unusable. Rows folded before
-- this rule took the latest such test as a refusal; their verdict goes back to "not known".
UPDATE credential_view c
   SET validated_ok = NULL
 WHERE c.validated_ok IS FALSE
   AND NOT EXISTS (
       SELECT 1
         FROM (SELECT e.payload -> 'CredentialValidated' AS tested
                 FROM events e
                -- Both aggregate types, so the event log's primary key finds the stream.
                WHERE e.aggregate_type IN ('AiModelConfig', 'Credential')
                  AND e.aggregate_id = c.aggregate_id
                  AND e.event_type = 'CredentialValidated'
                  AND e.payload -> 'CredentialValidated' ->> 'credential_id' = c.credential_id::text
                ORDER BY e.sequence DESC
                LIMIT 1) latest
        WHERE (latest.tested ->> 'status')::int IN (401, 403));
