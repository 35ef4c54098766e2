-- tollgate's control plane, version 1: teams, keys, the spend ledger, the audit log, and a
-- version counter that processes poll to learn that keys or teams changed.
-- One text for SQLite and PostgreSQL: times are Unix milliseconds, flags 0 or 1, lists and maps
-- JSON text.

CREATE TABLE tg_teams (
    name TEXT PRIMARY KEY,
    limits TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tg_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    previous_hash TEXT UNIQUE,
    previous_until BIGINT,
    team TEXT NOT NULL REFERENCES tg_teams (name),
    roles TEXT,
    models TEXT NOT NULL,
    limits TEXT,
    metadata TEXT NOT NULL,
    tags TEXT NOT NULL,
    admin BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);

CREATE INDEX tg_keys_team ON tg_keys (team);

CREATE TABLE tg_spend (
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    calls BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    PRIMARY KEY (day, key_id, team, model, provider)
);

CREATE INDEX tg_spend_team_day ON tg_spend (team, day);

CREATE TABLE tg_audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX tg_audit_at ON tg_audit (at);

CREATE TABLE tg_meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO tg_meta (name, value) VALUES ('records_version', 0);
