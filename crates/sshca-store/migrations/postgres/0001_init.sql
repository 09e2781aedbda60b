-- Every issued certificate. (ca_fingerprint, serial) is unique: the database
-- decides, across every replica. Serials and times are unsigned 64-bit
-- values stored bit for bit in BIGINT.
CREATE TABLE certs (
    id BIGSERIAL PRIMARY KEY,
    ca_fingerprint TEXT NOT NULL,
    serial BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    cert_type TEXT NOT NULL,
    principals TEXT NOT NULL,
    valid_after BIGINT NOT NULL,
    valid_before BIGINT NOT NULL,
    subject_fingerprint TEXT NOT NULL,
    requester TEXT NOT NULL,
    policy TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    certificate TEXT NOT NULL,
    UNIQUE (ca_fingerprint, serial)
);
CREATE INDEX certs_serial ON certs (serial);
CREATE INDEX certs_key_id ON certs (key_id);
CREATE INDEX certs_requester ON certs (requester);

-- Every refused request, with who asked and why, from every replica.
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    identity TEXT,
    auth_source TEXT,
    policy TEXT,
    status BIGINT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL
);
