-- A command's write carries the latest time it may start: a statement that reaches the server
-- after the request has given up (PostgreSQL was stopped or the network stalled, and the client
-- already got its 503) must append nothing, not commit behind the client's back.
CREATE FUNCTION aimc_write_deadline(deadline timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF clock_timestamp() > deadline THEN
        RAISE EXCEPTION 'the request''s deadline passed before its write began'
            USING ERRCODE = 'query_canceled';
    END IF;
    RETURN true;
END
$$;
