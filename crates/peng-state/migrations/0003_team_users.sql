-- peng state, version 3: the Unix user each team's instances run as when they are sandboxed.
-- peng makes the user (and a group of the same id) once, with the system's tools, and records
-- it here so the same team keeps the same id across restarts and machines' rebuilds.
CREATE TABLE team_users (
    team        TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    uid         INTEGER NOT NULL,
    gid         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
