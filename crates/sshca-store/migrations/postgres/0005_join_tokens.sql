-- One-time (or few-time) join tokens hosts enroll with: only the hash of
-- a token is kept, with the principals it is bound to, its expiry and its
-- remaining uses (consumed atomically).
CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    join_name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    principals TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    uses_left BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
