-- peng state, version 1. Timestamps are nanoseconds since the Unix epoch.

CREATE TABLE teams (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    -- bumped to invalidate the team's ingest token (the token is derived, never stored)
    ingest_generation INTEGER NOT NULL DEFAULT 1
);

-- API tokens, stored as SHA-256 hex of the token; team NULL means an admin token.
CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY NOT NULL,
    team        TEXT REFERENCES teams(name) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);

-- The applied service files. A destroyed service keeps its row (destroyed_at set) so that its
-- logs are still deleted on time by its retention.
CREATE TABLE services (
    team        TEXT NOT NULL REFERENCES teams(name),
    service     TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    spec_yaml   TEXT NOT NULL,
    base_dir    TEXT NOT NULL,
    -- instances per stage as applied (JSON object); differs from the file after `apply --stage`
    stages_json TEXT NOT NULL,
    retention_ns INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    applied_at  INTEGER NOT NULL,
    applied_by  TEXT NOT NULL,
    destroyed_at INTEGER,
    PRIMARY KEY (team, service)
);

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    team        TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_team ON audit(team, id);

CREATE TABLE alerts (
    team        TEXT NOT NULL,
    service     TEXT NOT NULL,
    stage       TEXT NOT NULL,
    alert       TEXT NOT NULL,
    state       TEXT NOT NULL,
    since_ns    INTEGER,
    started_at_ns INTEGER,
    value       REAL,
    severity    TEXT NOT NULL,
    escalated   INTEGER NOT NULL,
    message     TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (team, service, stage, alert)
);
