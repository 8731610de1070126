-- The periodic catch-up reads only the log written since its last pass, by the `occurred_at`
-- stamp every event's metadata carries (UTC, RFC 3339, so its text sorts as its time). Events
-- are appended in about that order, so a BRIN index finds the recent ones by reading the last
-- pages of the table only, and costs an append next to nothing.
CREATE INDEX events_occurred_at ON events USING brin ((metadata ->> 'occurred_at'));
