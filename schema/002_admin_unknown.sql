-- 002: a user's admin status may be unknown, and rows remember where they
-- came from.
--
-- users.admin is 1 (admin), 0 (not admin) or NULL (unknown: never promoted
-- nor demoted since the store has known the user). With NULL the reconciler
-- leaves the user's power levels and admin-room membership as Synapse has
-- them. Rows that exist keep their meaning: 0 and 1 stay as they are.
-- users.origin says what last wrote the row: 'callback' (Rasenmaeher) or
-- 'adopt' (`matrixrmapi adopt`, seeded from what Synapse has).
-- journal gains the event kind 'adopted', an outcome ('applied', or
-- 'refused' for a callback that changed nothing: a Matrix ID bound to another
-- uuid, a reserved account) and a detail column (what adopt recorded, why a
-- callback was refused). SQLite cannot change a CHECK constraint in place, so both tables
-- are rebuilt (ids kept); the view that reads users is dropped and recreated.
DROP VIEW status_users;

CREATE TABLE users_new (
    matrix_id  TEXT PRIMARY KEY,
    callsign   TEXT NOT NULL,
    uuid       TEXT NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    admin      INTEGER CHECK (admin IS NULL OR admin IN (0, 1)),
    created_ms INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL,
    origin     TEXT NOT NULL DEFAULT 'callback' CHECK (origin IN ('callback', 'adopt'))
);
INSERT INTO users_new (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms)
    SELECT matrix_id, callsign, uuid, active, admin, created_ms, updated_ms FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

CREATE TABLE journal_new (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    event     TEXT NOT NULL CHECK (event IN ('created', 'revoked', 'promoted', 'demoted', 'updated', 'adopted')),
    uuid      TEXT NOT NULL,
    callsign  TEXT NOT NULL,
    matrix_id TEXT NOT NULL,
    outcome   TEXT NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'refused')),
    detail    TEXT
);
INSERT INTO journal_new (id, at_ms, event, uuid, callsign, matrix_id)
    SELECT id, at_ms, event, uuid, callsign, matrix_id FROM journal;
DROP TABLE journal;
ALTER TABLE journal_new RENAME TO journal;

CREATE VIEW status_users AS
SELECT u.matrix_id, u.callsign,
       CASE u.active WHEN 1 THEN 'active' ELSE 'revoked' END AS desired,
       u.admin AS desired_admin,
       CASE WHEN u.admin IS NULL THEN 'unknown' WHEN u.admin = 1 THEN 'admin' ELSE 'not admin' END AS admin_status,
       u.origin,
       COALESCE(o.account, 'unknown') AS account,
       COALESCE(o.joined, '[]') AS joined,
       COALESCE(o.levels, '{}') AS levels,
       COALESCE(o.pending, -1) AS pending,
       o.observed_ms
FROM users u LEFT JOIN observed_users o ON o.matrix_id = u.matrix_id;
