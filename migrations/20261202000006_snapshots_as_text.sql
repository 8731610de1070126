-- A snapshot is only ever stored and read whole: as json (text) PostgreSQL hands it out as
-- stored instead of rendering jsonb back to text at every command.
ALTER TABLE aggregate_snapshots ALTER COLUMN payload TYPE json USING payload::json;
