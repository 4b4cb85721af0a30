-- 003: interop grants for peer products (BattleLog). Rasenmaeher's
-- POST /api/v1/interop/add records the peer's certificate CN here; a client
-- certificate with a granted CN may fetch the ingest bot's token from
-- GET /api/v1/interop/authz. The ingest bot exists once there is a grant.
CREATE TABLE interop_grants (
    certcn     TEXT PRIMARY KEY,
    x509cert   TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
