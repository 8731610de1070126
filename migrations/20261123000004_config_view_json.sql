-- The view is only ever stored and returned whole, never queried inside: as json (text) Postgres
-- hands it out as stored instead of rendering jsonb back to text on every read.
ALTER TABLE config_view ALTER COLUMN view TYPE json USING view::json;
