-- Every issued certificate. (ca_fingerprint, serial) is unique: the database
-- decides, and a collision makes the service draw a new serial.
-- Serials and times are unsigned 64-bit values stored bit for bit in
-- SQLite's signed INTEGER.
CREATE TABLE certs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ca_fingerprint TEXT NOT NULL,
    serial INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    cert_type TEXT NOT NULL,
    principals TEXT NOT NULL,
    valid_after INTEGER NOT NULL,
    valid_before INTEGER NOT NULL,
    subject_fingerprint TEXT NOT NULL,
    requester TEXT NOT NULL,
    policy TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    certificate TEXT NOT NULL,
    UNIQUE (ca_fingerprint, serial)
);
CREATE INDEX certs_serial ON certs (serial);
CREATE INDEX certs_key_id ON certs (key_id);
CREATE INDEX certs_requester ON certs (requester);

-- Every refused request, with who asked and why.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    identity TEXT,
    auth_source TEXT,
    policy TEXT,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL
);
