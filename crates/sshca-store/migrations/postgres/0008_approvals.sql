-- Sign requests under a policy that needs approval: the request as the
-- authority wrote it, its state (pending, issuing, approved, denied), the
-- approvals given so far and, once approved, the certificate. `version`
-- makes each change a compare-and-set, so replicas sharing the store
-- decide each request once.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    requester TEXT NOT NULL,
    requester_source TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    votes TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    reason TEXT,
    serial BIGINT,
    certificate TEXT,
    version BIGINT NOT NULL
);
CREATE INDEX approvals_state ON approvals (state, created_at);
