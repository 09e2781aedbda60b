//! `impl_store!`: the [`crate::Store`] trait over the SQL that
//! [`crate::sql::sql_for`] expands, the same for every driver.

/// The [`crate::Store`] methods of a store struct with `writer: Writer`,
/// `readers: Pool` and `shown: String`, over its module `sql` (expanded by
/// [`crate::sql::sql_for`]).
macro_rules! impl_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn record(&self, cert: &IssuedCert) -> Result<Recorded> {
                let cert = cert.clone();
                self.writer.submit(|tx| Job::Cert(cert, None, tx)).await
            }

            async fn record_audited(
                &self,
                cert: &IssuedCert,
                event: &AuditEvent,
            ) -> Result<Recorded> {
                let (cert, event) = (cert.clone(), event.clone());
                self.writer
                    .submit(|tx| Job::Cert(cert, Some(event), tx))
                    .await
            }

            async fn audit(&self, event: &AuditEvent) -> Result<()> {
                let event = event.clone();
                self.writer.submit(|tx| Job::Audit(event, None, tx)).await
            }

            async fn certs(&self, q: &CertQuery) -> Result<Vec<IssuedCert>> {
                sql::query_certs(&self.readers, q).await
            }

            async fn certs_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, IssuedCert)>> {
                sql::page_certs(&self.readers, after, limit).await
            }

            async fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>> {
                let rows =
                    sql::query_audit(&self.readers, None, limit.min(CertQuery::MAX_LIMIT)).await?;
                Ok(rows.into_iter().map(|r| r.event).collect())
            }

            async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, AuditEvent)>> {
                let rows = sql::query_audit(&self.readers, Some(after), limit).await?;
                Ok(rows.into_iter().map(|r| (r.id, r.event)).collect())
            }

            async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<$crate::AuditRow>> {
                sql::query_audit(&self.readers, Some(after), limit).await
            }

            async fn audit_heads(&self) -> Result<Vec<$crate::ChainHead>> {
                sql::audit_heads(&self.readers).await
            }

            async fn audit_head(&self, replica_id: &str) -> Result<Option<$crate::ChainHead>> {
                sql::audit_head(&self.readers, replica_id).await
            }

            async fn audit_chain_rows(
                &self,
                replica_id: &str,
                after_seq: u64,
                limit: u32,
            ) -> Result<Vec<$crate::AuditRow>> {
                sql::audit_chain_rows(&self.readers, replica_id, after_seq, limit).await
            }

            async fn import(
                &self,
                certs: &[IssuedCert],
                events: &[$crate::AuditRow],
            ) -> Result<(Vec<Recorded>, usize)> {
                self.writer.submit_all(certs, events).await
            }

            async fn revoke(&self, revocation: &$crate::Revocation) -> Result<()> {
                sql::insert_revocation(&self.readers, revocation).await
            }

            async fn revocations(&self, ca: Option<&str>) -> Result<Vec<$crate::Revocation>> {
                sql::query_revocations(&self.readers, ca).await
            }

            async fn revocation_mark(&self, ca: &str) -> Result<(u64, i64)> {
                sql::revocation_mark(&self.readers, ca).await
            }

            async fn expired_revoked_serials(
                &self,
                ca: &str,
                ca_keys: &[String],
                now: u64,
            ) -> Result<Vec<u64>> {
                sql::expired_revoked_serials(&self.readers, ca, ca_keys, now).await
            }

            async fn has_unexpired(&self, ca_key: &str, now: u64) -> Result<bool> {
                sql::has_unexpired(&self.readers, ca_key, now).await
            }

            async fn next_krl_version(&self, ca: &str, at_least: u64) -> Result<u64> {
                sql::next_krl_version(&self.readers, ca, at_least).await
            }

            async fn krl_versions(&self) -> Result<Vec<(String, u64)>> {
                sql::krl_versions(&self.readers).await
            }

            async fn use_nonce(&self, nonce: &str, expires_at: u64, now: u64) -> Result<bool> {
                sql::use_nonce(&self.readers, nonce, expires_at, now).await
            }

            async fn add_join_token(&self, token: &$crate::JoinToken) -> Result<()> {
                sql::add_join_token(&self.readers, token).await
            }

            async fn join_token(
                &self,
                join: &str,
                token_hash: &str,
                now: u64,
            ) -> Result<std::result::Result<$crate::JoinToken, $crate::JoinRefusal>> {
                sql::join_token(&self.readers, join, token_hash, now).await
            }

            async fn join_tokens(&self) -> Result<Vec<$crate::JoinToken>> {
                sql::join_tokens(&self.readers).await
            }

            async fn consume_join_token(
                &self,
                join: &str,
                token_hash: &str,
                now: u64,
            ) -> Result<std::result::Result<$crate::JoinToken, $crate::JoinRefusal>> {
                sql::consume_join_token(&self.readers, join, token_hash, now).await
            }

            async fn claim_instance(&self, join: &str, instance: &str, now: u64) -> Result<bool> {
                sql::claim_instance(&self.readers, join, instance, now).await
            }

            async fn release_instance(&self, join: &str, instance: &str) -> Result<()> {
                sql::release_instance(&self.readers, join, instance).await
            }

            async fn joined_instances(&self) -> Result<Vec<$crate::JoinedInstance>> {
                sql::joined_instances(&self.readers).await
            }

            async fn add_approval(&self, a: &$crate::Approval) -> Result<()> {
                sql::add_approval(&self.readers, a).await
            }

            async fn approval(&self, id: &str) -> Result<Option<$crate::Approval>> {
                sql::approval(&self.readers, id).await
            }

            async fn approvals(
                &self,
                state: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::Approval>> {
                sql::approvals(&self.readers, state, limit).await
            }

            async fn update_approval(&self, a: &$crate::Approval) -> Result<bool> {
                sql::update_approval(&self.readers, a).await
            }

            async fn health(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.readers)
                    .await
                    .map(|_| ())
                    .map_err(|e| unavailable("the database does not answer", e))
            }

            fn describe(&self) -> String {
                self.shown.clone()
            }
        }
    };
}

pub(crate) use impl_store;
