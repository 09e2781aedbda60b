-- The audit trail as versioned events, hash-chained per replica: each new
-- row holds its event's JSON (body, schema in docs/audit.md) and its place
-- in its replica's chain, with the previous row's hash and its own. Rows
-- from before keep NULL here and stay outside the chains.
ALTER TABLE audit ADD COLUMN event_type TEXT;
ALTER TABLE audit ADD COLUMN body TEXT;
ALTER TABLE audit ADD COLUMN replica_id TEXT;
ALTER TABLE audit ADD COLUMN seq BIGINT;
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_chain ON audit (replica_id, seq);
