//! The SQL both databases run, written once: `sql_for!` expands it for one
//! sqlx driver (its types, how a write transaction begins, how a principal
//! is looked up in the JSON list).

/// Expands the store's SQL for one driver.
macro_rules! sql_for {
    (
        db = $db:ty,
        conn = $conn:ty,
        row = $row:ty,
        begin = $begin:expr,
        principal = ($pre:expr, $post:expr) $(,)?
    ) => {
        use sqlx::{QueryBuilder, Row};

        use sshca_signer::{Error, ErrorKind, Result};
        use $crate::writer::Job;
        use $crate::{from_db, to_db, unavailable, AuditEvent, CertQuery, IssuedCert, Recorded};

        /// One transaction for the whole batch: one multi-row INSERT for
        /// the certificates (RETURNING tells which rows went in), one for
        /// the audit rows.
        pub(crate) async fn write_batch(c: &mut $conn, batch: &[Job]) -> Result<Vec<Recorded>> {
            let write = |e| unavailable("cannot write to the database", e);
            let certs: Vec<&IssuedCert> = batch
                .iter()
                .filter_map(|j| match j {
                    Job::Cert(cert, _) => Some(cert),
                    Job::Audit(..) => None,
                })
                .collect();
            let events: Vec<&AuditEvent> = batch
                .iter()
                .filter_map(|j| match j {
                    Job::Audit(e, _) => Some(e),
                    Job::Cert(..) => None,
                })
                .collect();
            let mut principals = Vec::with_capacity(certs.len());
            for cert in &certs {
                principals.push(serde_json::to_string(&cert.principals).map_err(|e| {
                    Error::new(ErrorKind::Internal, "cannot encode principals").with_source(e)
                })?);
            }
            sqlx::query($begin).execute(&mut *c).await.map_err(write)?;
            // (CA, serial) of the rows that went in.
            let mut inserted = std::collections::HashSet::new();
            // 12 bound values per row: well under either database's limit.
            for (chunk, principals) in certs.chunks(1000).zip(principals.chunks(1000)) {
                let mut b: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO certs (ca_fingerprint, serial, key_id, cert_type, principals, \
                     valid_after, valid_before, subject_fingerprint, requester, policy, \
                     issued_at, certificate) ",
                );
                b.push_values(
                    chunk.iter().zip(principals),
                    |mut row, (cert, principals)| {
                        row.push_bind(cert.ca_fingerprint.clone())
                            .push_bind(to_db(cert.serial))
                            .push_bind(cert.key_id.clone())
                            .push_bind(cert.cert_type.clone())
                            .push_bind(principals.clone())
                            .push_bind(to_db(cert.valid_after))
                            .push_bind(to_db(cert.valid_before))
                            .push_bind(cert.subject_fingerprint.clone())
                            .push_bind(cert.requester.clone())
                            .push_bind(cert.policy.clone())
                            .push_bind(to_db(cert.issued_at))
                            .push_bind(cert.certificate.clone());
                    },
                );
                b.push(
                    " ON CONFLICT (ca_fingerprint, serial) DO NOTHING \
                     RETURNING ca_fingerprint, serial",
                );
                for r in b.build().fetch_all(&mut *c).await.map_err(write)? {
                    let ca: String = r.try_get("ca_fingerprint").map_err(write)?;
                    let serial: i64 = r.try_get("serial").map_err(write)?;
                    inserted.insert((ca, from_db(serial)));
                }
            }
            for chunk in events.chunks(2000) {
                let mut b: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO audit (at, request_id, identity, auth_source, policy, status, \
                     code, reason) ",
                );
                b.push_values(chunk, |mut row, e| {
                    row.push_bind(to_db(e.at))
                        .push_bind(e.request_id.clone())
                        .push_bind(e.identity.clone())
                        .push_bind(e.auth_source.clone())
                        .push_bind(e.policy.clone())
                        .push_bind(i64::from(e.status))
                        .push_bind(e.code.clone())
                        .push_bind(e.reason.clone());
                });
                b.build().execute(&mut *c).await.map_err(write)?;
            }
            sqlx::query("COMMIT")
                .execute(&mut *c)
                .await
                .map_err(|e| unavailable("cannot commit to the database", e))?;
            // The first job with a given (CA, serial) is the row that went
            // in; a second one in the same batch, like one already in the
            // table, is taken.
            Ok(batch
                .iter()
                .map(|j| match j {
                    Job::Cert(cert, _) => {
                        if inserted.remove(&(cert.ca_fingerprint.clone(), cert.serial)) {
                            Recorded::Stored
                        } else {
                            Recorded::SerialTaken
                        }
                    }
                    Job::Audit(..) => Recorded::Stored,
                })
                .collect())
        }

        fn cert_row(r: &$row) -> std::result::Result<(i64, IssuedCert), sqlx::Error> {
            let principals: String = r.try_get("principals")?;
            Ok((
                r.try_get("id")?,
                IssuedCert {
                    ca_fingerprint: r.try_get("ca_fingerprint")?,
                    serial: from_db(r.try_get("serial")?),
                    key_id: r.try_get("key_id")?,
                    cert_type: r.try_get("cert_type")?,
                    principals: serde_json::from_str(&principals).map_err(|e| {
                        sqlx::Error::ColumnDecode {
                            index: "principals".into(),
                            source: Box::new(e),
                        }
                    })?,
                    valid_after: from_db(r.try_get("valid_after")?),
                    valid_before: from_db(r.try_get("valid_before")?),
                    subject_fingerprint: r.try_get("subject_fingerprint")?,
                    requester: r.try_get("requester")?,
                    policy: r.try_get("policy")?,
                    issued_at: from_db(r.try_get("issued_at")?),
                    certificate: r.try_get("certificate")?,
                },
            ))
        }

        fn audit_row(r: &$row) -> std::result::Result<(i64, AuditEvent), sqlx::Error> {
            let status: i64 = r.try_get("status")?;
            Ok((
                r.try_get("id")?,
                AuditEvent {
                    at: from_db(r.try_get("at")?),
                    request_id: r.try_get("request_id")?,
                    identity: r.try_get("identity")?,
                    auth_source: r.try_get("auth_source")?,
                    policy: r.try_get("policy")?,
                    status: u16::try_from(status).unwrap_or(0),
                    code: r.try_get("code")?,
                    reason: r.try_get("reason")?,
                },
            ))
        }

        /// Certificates matching `q`, newest first.
        pub(crate) async fn query_certs(
            pool: &sqlx::Pool<$db>,
            q: &CertQuery,
        ) -> Result<Vec<IssuedCert>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new("SELECT * FROM certs WHERE 1=1");
            if let Some(v) = &q.ca_fingerprint {
                b.push(" AND ca_fingerprint = ").push_bind(v.clone());
            }
            if let Some(v) = q.serial {
                b.push(" AND serial = ").push_bind(to_db(v));
            }
            if let Some(v) = &q.key_id {
                b.push(" AND key_id = ").push_bind(v.clone());
            }
            if let Some(v) = &q.requester {
                b.push(" AND requester = ").push_bind(v.clone());
            }
            if let Some(v) = &q.principal {
                b.push($pre).push_bind(v.clone()).push($post);
            }
            b.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(q.effective_limit()));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(|e| unavailable("cannot read certificates", e))?;
            rows.iter()
                .map(|r| {
                    cert_row(r)
                        .map(|(_, c)| c)
                        .map_err(|e| unavailable("cannot read a certificate row", e))
                })
                .collect()
        }

        /// Certificates with ids after `after`, oldest first.
        pub(crate) async fn page_certs(
            pool: &sqlx::Pool<$db>,
            after: i64,
            limit: u32,
        ) -> Result<Vec<(i64, IssuedCert)>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new("SELECT * FROM certs WHERE id > ");
            b.push_bind(after)
                .push(" ORDER BY id LIMIT ")
                .push_bind(i64::from(limit));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(|e| unavailable("cannot read certificates", e))?;
            rows.iter()
                .map(|r| cert_row(r).map_err(|e| unavailable("cannot read a certificate row", e)))
                .collect()
        }

        /// Audit events with ids after `after` (oldest first), or the
        /// newest `limit` (newest first) when `after` is `None`.
        pub(crate) async fn query_audit(
            pool: &sqlx::Pool<$db>,
            after: Option<i64>,
            limit: u32,
        ) -> Result<Vec<(i64, AuditEvent)>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new("SELECT * FROM audit");
            match after {
                Some(a) => {
                    b.push(" WHERE id > ").push_bind(a).push(" ORDER BY id");
                }
                None => {
                    b.push(" ORDER BY id DESC");
                }
            }
            b.push(" LIMIT ").push_bind(i64::from(limit.max(1)));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(|e| unavailable("cannot read the audit table", e))?;
            rows.iter()
                .map(|r| audit_row(r).map_err(|e| unavailable("cannot read an audit row", e)))
                .collect()
        }
    };
}

pub(crate) use sql_for;

/// The [`crate::Store`] methods of a store struct with `writer: Writer`,
/// `readers: Pool` and `shown: String`, over its module `sql` (expanded by
/// [`sql_for`]).
macro_rules! impl_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn record(&self, cert: &IssuedCert) -> Result<Recorded> {
                let cert = cert.clone();
                self.writer.submit(|tx| Job::Cert(cert, tx)).await
            }

            async fn audit(&self, event: &AuditEvent) -> Result<()> {
                let event = event.clone();
                self.writer.submit(|tx| Job::Audit(event, tx)).await
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
                Ok(rows.into_iter().map(|(_, e)| e).collect())
            }

            async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, AuditEvent)>> {
                sql::query_audit(&self.readers, Some(after), limit).await
            }

            async fn import(
                &self,
                certs: &[IssuedCert],
                events: &[AuditEvent],
            ) -> Result<(Vec<Recorded>, usize)> {
                self.writer.submit_all(certs, events).await
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
