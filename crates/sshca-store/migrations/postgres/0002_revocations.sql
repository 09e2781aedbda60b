-- Every revocation, with who revoked what and why. kind is one of
-- serial (serial_lo..=serial_hi), key_id, key (value: SHA256 fingerprint)
-- and ca_key (value: the CA key's public line). Serials are unsigned 64-bit
-- values stored bit for bit.
CREATE TABLE revocations (
    id BIGSERIAL PRIMARY KEY,
    ca TEXT NOT NULL,
    kind TEXT NOT NULL,
    serial_lo BIGINT,
    serial_hi BIGINT,
    value TEXT,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revocations_ca ON revocations (ca, id);

-- The last KRL version handed out per CA: every build, by any replica,
-- takes a greater one.
CREATE TABLE krl_versions (
    ca TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
