-- 001: desired user state, callback journal, managed rooms, reconciler history.
-- Desired state per Matrix user. created_ms is the time of the latest /created
-- (0 when the user was first seen through another callback).
CREATE TABLE users (
    matrix_id  TEXT PRIMARY KEY,
    callsign   TEXT NOT NULL,
    uuid       TEXT NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    admin      INTEGER NOT NULL CHECK (admin IN (0, 1)),
    created_ms INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL
);

-- Every accepted callback, in order of arrival.
CREATE TABLE journal (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    event     TEXT NOT NULL CHECK (event IN ('created', 'revoked', 'promoted', 'demoted', 'updated')),
    uuid      TEXT NOT NULL,
    callsign  TEXT NOT NULL,
    matrix_id TEXT NOT NULL
);

-- The managed rooms: space, admin, general, helpdesk, offtopic.
CREATE TABLE rooms (
    key     TEXT PRIMARY KEY,
    alias   TEXT NOT NULL,
    room_id TEXT NOT NULL
);

-- One row per reconcile pass; result is 'running', 'ok', 'failed' or 'unreachable'.
CREATE TABLE passes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    result     TEXT NOT NULL DEFAULT 'running',
    planned    INTEGER NOT NULL DEFAULT 0,
    ok         INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    summary    TEXT
);

-- Every action a pass applied (or deferred), with Synapse's errcode on failure.
CREATE TABLE actions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    pass_id INTEGER NOT NULL REFERENCES passes (id) ON DELETE CASCADE,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    target  TEXT,
    room    TEXT,
    outcome TEXT NOT NULL,
    errcode TEXT,
    message TEXT
);
CREATE INDEX actions_by_pass ON actions (pass_id);

-- Failing actions wait here until next_ms before they are tried again.
CREATE TABLE backoff (
    key        TEXT PRIMARY KEY,
    attempts   INTEGER NOT NULL,
    next_ms    INTEGER NOT NULL,
    last_error TEXT
);

-- What the last pass saw of each managed user, for `matrixrmapi status`.
CREATE TABLE observed_users (
    matrix_id   TEXT PRIMARY KEY,
    account     TEXT NOT NULL,  -- 'none', 'active' or 'deactivated'
    joined      TEXT NOT NULL,  -- JSON array of room keys
    levels      TEXT NOT NULL,  -- JSON object room key -> power level
    pending     INTEGER NOT NULL, -- differences still open after the pass
    observed_ms INTEGER NOT NULL
);

-- Views for inspection with the sqlite3 shell (documented in the README).
CREATE VIEW status_users AS
SELECT u.matrix_id, u.callsign,
       CASE u.active WHEN 1 THEN 'active' ELSE 'revoked' END AS desired,
       u.admin AS desired_admin,
       COALESCE(o.account, 'unknown') AS account,
       COALESCE(o.joined, '[]') AS joined,
       COALESCE(o.levels, '{}') AS levels,
       COALESCE(o.pending, -1) AS pending,
       o.observed_ms
FROM users u LEFT JOIN observed_users o ON o.matrix_id = u.matrix_id;

CREATE VIEW status_last_pass AS
SELECT * FROM passes ORDER BY id DESC LIMIT 1;

CREATE VIEW status_recent_failures AS
SELECT a.pass_id, a.at_ms, a.kind, a.target, a.room, a.errcode, a.message
FROM actions a WHERE a.outcome = 'failed' ORDER BY a.id DESC LIMIT 20;
