-- 004: a pass writes only the observed rows that changed.
--
-- Every pass observes every managed user, so when they were observed is one
-- time for all of them: observed_meta holds it, written once a pass. Each
-- row keeps when it last changed (changed_ms, the former observed_ms), and a
-- pass that sees a user as the row already says leaves the row alone: at
-- 10,000 users a converged pass no longer rewrites 10,000 rows (and the
-- pages and write-ahead log behind them) every interval.
DROP VIEW status_users;
ALTER TABLE observed_users RENAME COLUMN observed_ms TO changed_ms;

CREATE TABLE observed_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    observed_ms INTEGER NOT NULL  -- the last pass that recorded the rows
);
INSERT INTO observed_meta (id, observed_ms)
    SELECT 1, m FROM (SELECT MAX(changed_ms) AS m FROM observed_users) WHERE m IS NOT NULL;

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
       o.changed_ms
FROM users u LEFT JOIN observed_users o ON o.matrix_id = u.matrix_id
     LEFT JOIN observed_meta m ON m.id = 1;
