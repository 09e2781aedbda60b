//! The SQL both databases run, written once: `sql_for!` expands it for one
//! sqlx driver (its types, how a write transaction begins, how a principal
//! is looked up in the JSON list); the audit trail's part is in
//! `sql_audit.rs`.

/// Expands the store's SQL for one driver.
macro_rules! sql_for {
    (
        db = $db:ty,
        conn = $conn:ty,
        row = $row:ty,
        begin = $begin:expr,
        chain_lock = ($lpre:expr, $lpost:expr),
        principal = ($pre:expr, $post:expr) $(,)?
    ) => {
        $crate::sql_audit::audit_sql_for!(
            db = $db,
            conn = $conn,
            row = $row,
            chain_lock = ($lpre, $lpost),
        );
        $crate::sql_approval::approval_sql_for!(db = $db, row = $row);

        use sqlx::{QueryBuilder, Row};

        use sshca_signer::{Error, ErrorKind, Result};
        use $crate::writer::Job;
        use $crate::chain::{event_json, link_hash, GENESIS};
        use $crate::{
            from_db, to_db, unavailable, AuditEvent, AuditRow, CertQuery, ChainHead, ChainLink,
            IssuedCert, JoinRefusal, JoinToken, JoinedInstance, Recorded, Revocation,
            RevocationTarget,
        };

        /// One transaction for the whole batch: one multi-row INSERT for
        /// the certificates (RETURNING tells which rows went in), one for
        /// the audit rows (new events appended to `replica`'s chain).
        pub(crate) async fn write_batch(
            c: &mut $conn,
            batch: &[Job],
            replica: &str,
        ) -> Result<Vec<Recorded>> {
            let write = |e| unavailable("cannot write to the database", e);
            let certs: Vec<&IssuedCert> = batch
                .iter()
                .filter_map(|j| match j {
                    Job::Cert(cert, _, _) => Some(cert),
                    Job::Audit(..) => None,
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
            // 15 bound values per row: well under either database's limit.
            for (chunk, principals) in certs.chunks(1000).zip(principals.chunks(1000)) {
                let mut b: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO certs (ca_fingerprint, serial, key_id, cert_type, principals, \
                     valid_after, valid_before, subject_fingerprint, requester, \
                     requester_source, policy, issued_at, certificate, renews, chain_start) ",
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
                            .push_bind(cert.requester_source.clone())
                            .push_bind(cert.policy.clone())
                            .push_bind(to_db(cert.issued_at))
                            .push_bind(cert.certificate.clone())
                            .push_bind(cert.renews.map(to_db))
                            .push_bind(cert.chain_start.map(to_db));
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
            // The events of the certificates that went in, then the audit
            // jobs, each with its JSON and link: new ones get the next
            // places in this replica's chain.
            let mut went_in = inserted.clone();
            let events: Vec<(&AuditEvent, Option<&$crate::writer::Copied>)> = batch
                .iter()
                .filter_map(|j| match j {
                    Job::Cert(cert, Some(e), _)
                        if went_in.remove(&(cert.ca_fingerprint.clone(), cert.serial)) =>
                    {
                        Some((e, None))
                    }
                    Job::Cert(..) => None,
                    Job::Audit(e, copied, _) => Some((e, copied.as_ref())),
                })
                .collect();
            insert_events(c, events, replica).await?;
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
                    Job::Cert(cert, _, _) => {
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
                    requester_source: r.try_get("requester_source")?,
                    policy: r.try_get("policy")?,
                    issued_at: from_db(r.try_get("issued_at")?),
                    certificate: r.try_get("certificate")?,
                    renews: r.try_get::<Option<i64>, _>("renews")?.map(from_db),
                    chain_start: r.try_get::<Option<i64>, _>("chain_start")?.map(from_db),
                },
            ))
        }

        /// Runs a built query and maps its rows; the database failing, or a
        /// row that does not decode, is unavailable (naming `what`).
        async fn fetch_rows<T>(
            pool: &sqlx::Pool<$db>,
            b: &mut QueryBuilder<'_, $db>,
            what: &str,
            map: impl Fn(&$row) -> std::result::Result<T, sqlx::Error>,
        ) -> Result<Vec<T>> {
            let what = format!("cannot read {what}");
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(|e| unavailable(&what, e))?;
            rows.iter()
                .map(|r| map(r).map_err(|e| unavailable(&what, e)))
                .collect()
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
            if let Some(v) = &q.requester_source {
                b.push(" AND (requester_source = ").push_bind(v.clone());
                if v == "token" || v == "client-cert" {
                    b.push(" OR requester_source IS NULL");
                }
                b.push(")");
            }
            if let Some(v) = &q.principal {
                b.push($pre).push_bind(v.clone()).push($post);
            }
            b.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(q.effective_limit()));
            fetch_rows(pool, &mut b, "certificates", |r| cert_row(r).map(|(_, c)| c)).await
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
            fetch_rows(pool, &mut b, "certificates", cert_row).await
        }

        /// Inserts one revocation.
        pub(crate) async fn insert_revocation(
            pool: &sqlx::Pool<$db>,
            r: &Revocation,
        ) -> Result<()> {
            let (kind, lo, hi, value) = match &r.target {
                RevocationTarget::Serials { from, to } => {
                    ("serial", Some(to_db(*from)), Some(to_db(*to)), None)
                }
                RevocationTarget::KeyId { key_id } => ("key_id", None, None, Some(key_id.clone())),
                RevocationTarget::Key { fingerprint } => {
                    ("key", None, None, Some(fingerprint.clone()))
                }
                RevocationTarget::CaKey { public_key } => {
                    ("ca_key", None, None, Some(public_key.clone()))
                }
            };
            sqlx::query(
                "INSERT INTO revocations (ca, kind, serial_lo, serial_hi, value, reason, \
                 revoked_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.ca.clone())
            .bind(kind)
            .bind(lo)
            .bind(hi)
            .bind(value)
            .bind(r.reason.clone())
            .bind(r.revoked_by.clone())
            .bind(to_db(r.revoked_at))
            .execute(pool)
            .await
            .map_err(|e| unavailable("cannot record the revocation", e))?;
            Ok(())
        }

        fn revocation_row(r: &$row) -> std::result::Result<Revocation, sqlx::Error> {
            let kind: String = r.try_get("kind")?;
            let value: Option<String> = r.try_get("value")?;
            let value = || value.clone().unwrap_or_default();
            let target = match kind.as_str() {
                "serial" => RevocationTarget::Serials {
                    from: from_db(r.try_get::<Option<i64>, _>("serial_lo")?.unwrap_or(0)),
                    to: from_db(r.try_get::<Option<i64>, _>("serial_hi")?.unwrap_or(0)),
                },
                "key_id" => RevocationTarget::KeyId { key_id: value() },
                "key" => RevocationTarget::Key { fingerprint: value() },
                "ca_key" => RevocationTarget::CaKey { public_key: value() },
                other => {
                    return Err(sqlx::Error::Decode(
                        format!("unknown revocation kind `{other}`").into(),
                    ))
                }
            };
            Ok(Revocation {
                ca: r.try_get("ca")?,
                target,
                reason: r.try_get("reason")?,
                revoked_by: r.try_get("revoked_by")?,
                revoked_at: from_db(r.try_get("revoked_at")?),
            })
        }

        pub(crate) async fn use_nonce(
            pool: &sqlx::Pool<$db>,
            nonce: &str,
            expires_at: u64,
            now: u64,
        ) -> Result<bool> {
            let fail = |e| unavailable("cannot record the renewal nonce", e);
            sqlx::query("DELETE FROM renew_nonces WHERE expires_at < $1")
                .bind(to_db(now))
                .execute(pool)
                .await
                .map_err(fail)?;
            let done = sqlx::query(
                "INSERT INTO renew_nonces (nonce, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (nonce) DO NOTHING",
            )
            .bind(nonce.to_owned())
            .bind(to_db(expires_at))
            .execute(pool)
            .await
            .map_err(fail)?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn claim_instance(
            pool: &sqlx::Pool<$db>,
            join: &str,
            instance: &str,
            now: u64,
        ) -> Result<bool> {
            let done = sqlx::query(
                "INSERT INTO join_instances (join_name, instance, enrolled_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (join_name, instance) DO NOTHING",
            )
            .bind(join.to_owned())
            .bind(instance.to_owned())
            .bind(to_db(now))
            .execute(pool)
            .await
            .map_err(|e| unavailable("cannot record the joining instance", e))?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn release_instance(
            pool: &sqlx::Pool<$db>,
            join: &str,
            instance: &str,
        ) -> Result<()> {
            sqlx::query("DELETE FROM join_instances WHERE join_name = $1 AND instance = $2")
                .bind(join.to_owned())
                .bind(instance.to_owned())
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| unavailable("cannot forget the joining instance", e))
        }

        pub(crate) async fn joined_instances(
            pool: &sqlx::Pool<$db>,
        ) -> Result<Vec<JoinedInstance>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new(
                "SELECT * FROM join_instances ORDER BY enrolled_at, join_name, instance",
            );
            fetch_rows(pool, &mut b, "joined instances", |r: &$row| {
                Ok(JoinedInstance {
                    join: r.try_get("join_name")?,
                    instance: r.try_get("instance")?,
                    enrolled_at: from_db(r.try_get("enrolled_at")?),
                })
            })
            .await
        }

        pub(crate) async fn add_join_token(pool: &sqlx::Pool<$db>, t: &JoinToken) -> Result<()> {
            let principals = serde_json::to_string(&t.principals).map_err(|e| {
                Error::new(ErrorKind::Internal, "cannot encode principals").with_source(e)
            })?;
            sqlx::query(
                "INSERT INTO join_tokens (id, join_name, token_hash, principals, expires_at, \
                 uses_left, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(t.id.clone())
            .bind(t.join.clone())
            .bind(t.token_hash.clone())
            .bind(principals)
            .bind(to_db(t.expires_at))
            .bind(to_db(t.uses_left))
            .bind(to_db(t.created_at))
            .bind(t.created_by.clone())
            .execute(pool)
            .await
            .map_err(|e| unavailable("cannot record the join token", e))?;
            Ok(())
        }

        fn join_row(r: &$row) -> std::result::Result<JoinToken, sqlx::Error> {
            let principals: String = r.try_get("principals")?;
            Ok(JoinToken {
                id: r.try_get("id")?,
                join: r.try_get("join_name")?,
                token_hash: r.try_get("token_hash")?,
                principals: serde_json::from_str(&principals).map_err(|e| {
                    sqlx::Error::ColumnDecode {
                        index: "principals".into(),
                        source: Box::new(e),
                    }
                })?,
                expires_at: from_db(r.try_get("expires_at")?),
                uses_left: from_db(r.try_get("uses_left")?),
                created_at: from_db(r.try_get("created_at")?),
                created_by: r.try_get("created_by")?,
            })
        }

        pub(crate) async fn join_token(
            pool: &sqlx::Pool<$db>,
            join: &str,
            hash: &str,
            now: u64,
        ) -> Result<std::result::Result<JoinToken, JoinRefusal>> {
            let read = |e| unavailable("cannot read the join token", e);
            let row = sqlx::query("SELECT * FROM join_tokens WHERE token_hash = $1 AND join_name = $2")
                .bind(hash.to_owned())
                .bind(join.to_owned())
                .fetch_optional(pool)
                .await
                .map_err(read)?;
            let Some(row) = row else {
                return Ok(Err(JoinRefusal::Unknown));
            };
            let t = join_row(&row).map_err(read)?;
            Ok(if t.expires_at <= now {
                Err(JoinRefusal::Expired)
            } else if t.uses_left == 0 {
                Err(JoinRefusal::Used)
            } else {
                Ok(t)
            })
        }

        pub(crate) async fn join_tokens(pool: &sqlx::Pool<$db>) -> Result<Vec<JoinToken>> {
            let mut b: QueryBuilder<$db> =
                QueryBuilder::new("SELECT * FROM join_tokens ORDER BY created_at, id");
            fetch_rows(pool, &mut b, "join tokens", join_row).await
        }

        pub(crate) async fn consume_join_token(
            pool: &sqlx::Pool<$db>,
            join: &str,
            hash: &str,
            now: u64,
        ) -> Result<std::result::Result<JoinToken, JoinRefusal>> {
            let row = sqlx::query(
                "UPDATE join_tokens SET uses_left = uses_left - 1 \
                 WHERE token_hash = $1 AND join_name = $2 AND uses_left > 0 AND expires_at > $3 \
                 RETURNING *",
            )
            .bind(hash.to_owned())
            .bind(join.to_owned())
            .bind(to_db(now))
            .fetch_optional(pool)
            .await
            .map_err(|e| unavailable("cannot use the join token", e))?;
            match row {
                Some(r) => Ok(Ok(join_row(&r).map_err(|e| unavailable("cannot read the join token", e))?)),
                None => Ok(Err(join_token(pool, join, hash, now).await?.err().unwrap_or(JoinRefusal::Used))),
            }
        }

        /// Revocations of `ca` (all when `None`), oldest first.
        pub(crate) async fn query_revocations(
            pool: &sqlx::Pool<$db>,
            ca: Option<&str>,
        ) -> Result<Vec<Revocation>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new("SELECT * FROM revocations");
            if let Some(ca) = ca {
                b.push(" WHERE ca = ").push_bind(ca.to_owned());
            }
            b.push(" ORDER BY id");
            fetch_rows(pool, &mut b, "revocations", revocation_row).await
        }

        pub(crate) async fn revocation_mark(pool: &sqlx::Pool<$db>, ca: &str) -> Result<(u64, i64)> {
            let r = sqlx::query(
                "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS last FROM revocations WHERE ca = $1",
            )
            .bind(ca.to_owned())
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable("cannot read revocations", e))?;
            let n: i64 = r.try_get("n").map_err(|e| unavailable("cannot read revocations", e))?;
            let last: i64 = r
                .try_get("last")
                .map_err(|e| unavailable("cannot read revocations", e))?;
            Ok((u64::try_from(n).unwrap_or(0), last))
        }

        /// Pushes ` IN ($a, $b, ...)` (or a clause that is never true).
        fn push_in<'a>(b: &mut QueryBuilder<'a, $db>, column: &str, values: &[String]) {
            if values.is_empty() {
                b.push(" AND 1=0");
                return;
            }
            b.push(format!(" AND {column} IN ("));
            let mut sep = b.separated(", ");
            for v in values {
                sep.push_bind(v.clone());
            }
            sep.push_unseparated(")");
        }

        pub(crate) async fn expired_revoked_serials(
            pool: &sqlx::Pool<$db>,
            ca: &str,
            ca_keys: &[String],
            now: u64,
        ) -> Result<Vec<u64>> {
            // Times are stored bit for bit: a negative valid_before is past
            // 2^63, i.e. forever.
            let mut b: QueryBuilder<$db> = QueryBuilder::new(
                "SELECT r.serial_lo AS serial FROM revocations r WHERE r.kind = 'serial' \
                 AND r.serial_lo = r.serial_hi AND r.ca = ",
            );
            b.push_bind(ca.to_owned());
            b.push(" AND EXISTS (SELECT 1 FROM certs c WHERE c.serial = r.serial_lo");
            push_in(&mut b, "c.ca_fingerprint", ca_keys);
            b.push(") AND NOT EXISTS (SELECT 1 FROM certs c WHERE c.serial = r.serial_lo");
            push_in(&mut b, "c.ca_fingerprint", ca_keys);
            b.push(" AND (c.valid_before < 0 OR c.valid_before >= ")
                .push_bind(to_db(now.min(i64::MAX as u64)))
                .push("))");
            fetch_rows(pool, &mut b, "revocations", |r| {
                r.try_get::<i64, _>("serial").map(from_db)
            })
            .await
        }

        pub(crate) async fn has_unexpired(
            pool: &sqlx::Pool<$db>,
            ca_key: &str,
            now: u64,
        ) -> Result<bool> {
            let row = sqlx::query(
                "SELECT 1 AS one FROM certs WHERE ca_fingerprint = $1 \
                 AND (valid_before < 0 OR valid_before > $2) LIMIT 1",
            )
            .bind(ca_key.to_owned())
            .bind(to_db(now.min(i64::MAX as u64)))
            .fetch_optional(pool)
            .await
            .map_err(|e| unavailable("cannot read certificates", e))?;
            Ok(row.is_some())
        }

        pub(crate) async fn next_krl_version(
            pool: &sqlx::Pool<$db>,
            ca: &str,
            at_least: u64,
        ) -> Result<u64> {
            // One statement: the database serialises concurrent builders,
            // so no two get the same version.
            let floor = to_db(at_least.clamp(1, i64::MAX as u64));
            let r = sqlx::query(
                "INSERT INTO krl_versions (ca, version) VALUES ($1, $2) \
                 ON CONFLICT (ca) DO UPDATE SET version = CASE \
                 WHEN krl_versions.version + 1 > excluded.version THEN krl_versions.version + 1 \
                 ELSE excluded.version END RETURNING version",
            )
            .bind(ca.to_owned())
            .bind(floor)
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable("cannot update the KRL version", e))?;
            let v: i64 = r
                .try_get("version")
                .map_err(|e| unavailable("cannot read the KRL version", e))?;
            Ok(from_db(v))
        }

        pub(crate) async fn krl_versions(pool: &sqlx::Pool<$db>) -> Result<Vec<(String, u64)>> {
            let mut b: QueryBuilder<$db> =
                QueryBuilder::new("SELECT ca, version FROM krl_versions ORDER BY ca");
            fetch_rows(pool, &mut b, "KRL versions", |r| {
                Ok((r.try_get("ca")?, from_db(r.try_get("version")?)))
            })
            .await
        }
    };
}

pub(crate) use sql_for;
