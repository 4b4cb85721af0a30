-- 005: desired state from Kubernetes (the OpenDefence platform's Users).
--
-- users.origin gains 'kube': the row mirrors a platform User (uuid is the
-- User's metadata.uid), written by src/kubesource.c from its watch, never by
-- a callback. users.held is 1 while such a user has no UserBinding of ours:
-- the reconciler leaves an active held user alone (no account, no joins), so
-- the binding always exists, Synced=False Provisioning, before the first
-- write to Synapse for that user. A revoked user is never held back.
-- journal gains the event 'kube' (what the watch changed, in detail). SQLite
-- cannot change a CHECK constraint in place: both tables are rebuilt, ids
-- kept, and the view that reads users is recreated.
DROP VIEW status_users;

CREATE TABLE users_new (
    matrix_id  TEXT PRIMARY KEY,
    callsign   TEXT NOT NULL,
    uuid       TEXT NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    admin      INTEGER CHECK (admin IS NULL OR admin IN (0, 1)),
    created_ms INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL,
    origin     TEXT NOT NULL DEFAULT 'callback' CHECK (origin IN ('callback', 'adopt', 'kube')),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1))
);
INSERT INTO users_new (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms, origin)
    SELECT matrix_id, callsign, uuid, active, admin, created_ms, updated_ms, origin FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

CREATE TABLE journal_new (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    event     TEXT NOT NULL CHECK (event IN ('created', 'revoked', 'promoted', 'demoted', 'updated', 'adopted',
                                             'kube')),
    uuid      TEXT NOT NULL,
    callsign  TEXT NOT NULL,
    matrix_id TEXT NOT NULL,
    outcome   TEXT NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'refused')),
    detail    TEXT
);
INSERT INTO journal_new (id, at_ms, event, uuid, callsign, matrix_id, outcome, detail)
    SELECT id, at_ms, event, uuid, callsign, matrix_id, outcome, detail FROM journal;
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
       CASE WHEN o.matrix_id IS NULL THEN NULL ELSE m.observed_ms END AS observed_ms,
       o.changed_ms,
       u.held
FROM users u LEFT JOIN observed_users o ON o.matrix_id = u.matrix_id
     LEFT JOIN observed_meta m ON m.id = 1;
