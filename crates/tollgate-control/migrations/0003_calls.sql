-- The call log: one row per call, its record whole as JSON beside the columns it is found by.
CREATE TABLE tg_calls (
    at BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT,
    team TEXT,
    model TEXT,
    status INTEGER,
    error TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    record TEXT NOT NULL
);

CREATE INDEX tg_calls_at ON tg_calls (at);
CREATE INDEX tg_calls_key ON tg_calls (key_id, at);
CREATE INDEX tg_calls_team ON tg_calls (team, at);
CREATE INDEX tg_calls_request ON tg_calls (request_id);
