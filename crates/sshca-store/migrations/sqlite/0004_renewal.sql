-- Renewal by proof of possession: the serial a certificate renews (NULL:
-- not a renewal) and when its chain of renewals began (NULL: this is the
-- first certificate, the chain began at its issued_at).
ALTER TABLE certs ADD COLUMN renews BIGINT;
ALTER TABLE certs ADD COLUMN chain_start BIGINT;
-- The nonces of renewal proofs seen, kept while a proof with them could
-- still be accepted, so that no proof is used twice (across replicas).
CREATE TABLE renew_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
