-- Where the requester's credential came from: `token`, `client-cert`,
-- `oidc:ISSUER` or `local`. Rows written before it existed are NULL (a
-- token or a client certificate: the only sources the service had then).
ALTER TABLE certs ADD COLUMN requester_source TEXT;
