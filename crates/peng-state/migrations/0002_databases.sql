-- peng state, version 2: databases. Timestamps are nanoseconds since the Unix epoch.

-- One database per service and stage, as declared by the last apply. A dedicated database has
-- two nodes, 'a' and 'b' (the second exists only with a replica); `primary_node` says which one
-- takes writes, and changes on promote.
CREATE TABLE databases (
    team        TEXT NOT NULL,
    service     TEXT NOT NULL,
    stage       TEXT NOT NULL,
    mode        TEXT NOT NULL,             -- dedicated | shared
    server      TEXT NOT NULL,             -- the shared server's name; '' for dedicated
    version     TEXT NOT NULL,
    plan        TEXT NOT NULL,
    db_name     TEXT NOT NULL,
    replica     INTEGER NOT NULL,
    port_a      INTEGER,
    port_b      INTEGER,
    primary_node TEXT NOT NULL DEFAULT 'a',
    -- which of the two application accounts instances use now ('a' or 'b'); rotation flips it
    app_slot    TEXT NOT NULL DEFAULT 'a',
    -- creating: declared, not yet complete; ready: made and checked once
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (team, service, stage)
);

-- Generated database passwords, encrypted by the server (ChaCha20-Poly1305, key in the data
-- dir); this table holds only nonce and ciphertext.
CREATE TABLE db_secrets (
    team        TEXT NOT NULL,
    service     TEXT NOT NULL,
    stage       TEXT NOT NULL,
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (team, service, stage, name)
);

CREATE TABLE db_backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    team        TEXT NOT NULL,
    service     TEXT NOT NULL,
    stage       TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- scheduled | manual | final
    file        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    bytes       INTEGER NOT NULL DEFAULT 0,
    took_ms     INTEGER NOT NULL DEFAULT 0,
    tables_json TEXT NOT NULL DEFAULT '{}',
    -- NULL: not verified yet; 1: a restore of it gave the same row counts; 0: it did not
    verified    INTEGER,
    restore_ms  INTEGER,
    error       TEXT,
    deleted_at  INTEGER
);
CREATE INDEX db_backups_by_db ON db_backups(team, service, stage, id);
