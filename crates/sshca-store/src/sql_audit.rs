//! The audit trail's SQL, written once for both drivers and expanded by
//! `sql_for!` into the same module: events linked into their replica's
//! hash chain inside the write transaction, rows read back with their
//! links, chain heads.

/// Expands the audit SQL for one driver (inside `sql_for!`, whose imports
/// and `fetch_rows` it uses).
macro_rules! audit_sql_for {
    (
        db = $db:ty,
        conn = $conn:ty,
        row = $row:ty,
        chain_lock = ($lpre:expr, $lpost:expr) $(,)?
    ) => {
        /// The query for the newest row of `replica`'s chain.
        fn head_query(replica: &str) -> QueryBuilder<'static, $db> {
            let mut b: QueryBuilder<$db> =
                QueryBuilder::new("SELECT replica_id, seq, hash FROM audit WHERE replica_id = ");
            b.push_bind(replica.to_owned())
                .push(" AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1");
            b
        }

        fn head_row(r: &$row) -> std::result::Result<ChainHead, sqlx::Error> {
            Ok(ChainHead {
                replica_id: r.try_get("replica_id")?,
                seq: from_db(r.try_get("seq")?),
                hash: r.try_get("hash")?,
            })
        }

        /// The newest row of `replica`'s chain (place and hash), read inside
        /// the write transaction after taking the chain's lock (PostgreSQL:
        /// an advisory lock per replica; SQLite's write transaction is
        /// already exclusive).
        async fn chain_head(c: &mut $conn, replica: &str) -> Result<(u64, String)> {
            let read = |e| unavailable("cannot read the audit chain", e);
            if !$lpre.is_empty() {
                let mut b: QueryBuilder<$db> = QueryBuilder::new($lpre);
                b.push_bind(replica.to_owned()).push($lpost);
                b.build().execute(&mut *c).await.map_err(read)?;
            }
            match head_query(replica).build().fetch_optional(&mut *c).await.map_err(read)? {
                Some(r) => head_row(&r).map(|h| (h.seq, h.hash)).map_err(read),
                None => Ok((0, GENESIS.to_owned())),
            }
        }

        /// Writes audit rows in the open transaction: copied ones as they
        /// were, new ones at the next places of `replica`'s chain.
        async fn insert_events(
            c: &mut $conn,
            events: Vec<(&AuditEvent, Option<&$crate::writer::Copied>)>,
            replica: &str,
        ) -> Result<()> {
            let write = |e| unavailable("cannot write to the database", e);
            let mut head: Option<(u64, String)> = None;
            let mut rows = Vec::with_capacity(events.len());
            for (e, copied) in events {
                let (body, link) = match copied {
                    Some(c) => (c.body.clone(), c.link.clone()),
                    None => {
                        let (seq, prev) = match head.take() {
                            Some(h) => h,
                            None => chain_head(c, replica).await?,
                        };
                        let body = event_json(e).map_err(|e| {
                            Error::new(ErrorKind::Internal, "cannot encode an audit event")
                                .with_source(e)
                        })?;
                        let seq = seq + 1;
                        let hash = link_hash(replica, seq, &prev, &body);
                        head = Some((seq, hash.clone()));
                        (
                            Some(body),
                            Some(ChainLink {
                                replica_id: replica.to_owned(),
                                seq,
                                prev_hash: prev,
                                hash,
                            }),
                        )
                    }
                };
                rows.push((e, body, link));
            }
            for chunk in rows.chunks(1000) {
                let mut b: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO audit (at, request_id, identity, auth_source, policy, status, \
                     code, reason, event_type, body, replica_id, seq, prev_hash, hash) ",
                );
                b.push_values(chunk, |mut row, (e, body, link)| {
                    row.push_bind(to_db(e.at))
                        .push_bind(e.request_id.clone())
                        .push_bind(e.identity.clone())
                        .push_bind(e.auth_source.clone())
                        .push_bind(e.policy.clone())
                        .push_bind(i64::from(e.status))
                        .push_bind(e.code.clone())
                        .push_bind(e.reason.clone())
                        .push_bind(body.as_ref().map(|_| e.kind.clone()))
                        .push_bind(body.clone())
                        .push_bind(link.as_ref().map(|l| l.replica_id.clone()))
                        .push_bind(link.as_ref().map(|l| to_db(l.seq)))
                        .push_bind(link.as_ref().map(|l| l.prev_hash.clone()))
                        .push_bind(link.as_ref().map(|l| l.hash.clone()));
                });
                b.build().execute(&mut *c).await.map_err(write)?;
            }
            Ok(())
        }

        /// An audit row: the event from its JSON when it has one, else
        /// from the columns of a row written before the chains.
        fn audit_row(r: &$row) -> std::result::Result<AuditRow, sqlx::Error> {
            let status: i64 = r.try_get("status")?;
            let status = u16::try_from(status).unwrap_or(0);
            let body: Option<String> = r.try_get("body")?;
            let legacy = |r: &$row| -> std::result::Result<AuditEvent, sqlx::Error> {
                let code: String = r.try_get("code")?;
                let (kind, outcome) = if code == "revoked" {
                    ("revoke", "allowed")
                } else if status >= 400 {
                    ("refuse", "refused")
                } else {
                    ("admin", "allowed")
                };
                Ok(AuditEvent {
                    at: from_db(r.try_get("at")?),
                    request_id: r.try_get("request_id")?,
                    kind: kind.into(),
                    identity: r.try_get("identity")?,
                    auth_source: r.try_get("auth_source")?,
                    policy: r.try_get("policy")?,
                    status,
                    outcome: outcome.into(),
                    code,
                    reason: r.try_get("reason")?,
                    ..AuditEvent::default()
                })
            };
            let columns = legacy(r)?;
            let kind: Option<String> = r.try_get("event_type")?;
            let (event, columns_match) = match &body {
                Some(b) => match serde_json::from_str::<AuditEvent>(b) {
                    Ok(e) => {
                        let same = e.at == columns.at
                            && e.request_id == columns.request_id
                            && e.identity == columns.identity
                            && e.auth_source == columns.auth_source
                            && e.policy == columns.policy
                            && e.status == columns.status
                            && e.code == columns.code
                            && e.reason == columns.reason
                            && kind.as_deref() == Some(e.kind.as_str());
                        (e, same)
                    }
                    // An unreadable body is reported by the verifier; the
                    // columns still say what they say.
                    Err(_) => (columns, false),
                },
                None => (columns, true),
            };
            let replica: Option<String> = r.try_get("replica_id")?;
            let link = match replica {
                Some(replica_id) => Some(ChainLink {
                    replica_id,
                    seq: from_db(r.try_get::<Option<i64>, _>("seq")?.unwrap_or(0)),
                    prev_hash: r.try_get::<Option<String>, _>("prev_hash")?.unwrap_or_default(),
                    hash: r.try_get::<Option<String>, _>("hash")?.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(AuditRow {
                id: r.try_get("id")?,
                event,
                body,
                link,
                columns_match,
            })
        }

        /// One chain's rows after `after_seq`, in order.
        pub(crate) async fn audit_chain_rows(
            pool: &sqlx::Pool<$db>,
            replica: &str,
            after_seq: u64,
            limit: u32,
        ) -> Result<Vec<AuditRow>> {
            let mut b: QueryBuilder<$db> =
                QueryBuilder::new("SELECT * FROM audit WHERE replica_id = ");
            b.push_bind(replica.to_owned())
                .push(" AND seq > ")
                .push_bind(to_db(after_seq))
                .push(" ORDER BY seq LIMIT ")
                .push_bind(i64::from(limit.max(1)));
            fetch_rows(pool, &mut b, "the audit chain", audit_row).await
        }

        /// The newest row of one chain.
        pub(crate) async fn audit_head(
            pool: &sqlx::Pool<$db>,
            replica: &str,
        ) -> Result<Option<ChainHead>> {
            let rows = fetch_rows(pool, &mut head_query(replica), "the audit chain", head_row).await?;
            Ok(rows.into_iter().next())
        }

        /// The newest row of every chain.
        pub(crate) async fn audit_heads(pool: &sqlx::Pool<$db>) -> Result<Vec<ChainHead>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new(
                "SELECT a.replica_id, a.seq, a.hash FROM audit a JOIN \
                 (SELECT replica_id, MAX(seq) AS seq FROM audit WHERE replica_id IS NOT NULL \
                 GROUP BY replica_id) h ON a.replica_id = h.replica_id AND a.seq = h.seq \
                 ORDER BY a.replica_id",
            );
            fetch_rows(pool, &mut b, "the audit chains", head_row).await
        }

        /// Audit events with ids after `after` (oldest first), or the
        /// newest `limit` (newest first) when `after` is `None`.
        pub(crate) async fn query_audit(
            pool: &sqlx::Pool<$db>,
            after: Option<i64>,
            limit: u32,
        ) -> Result<Vec<AuditRow>> {
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
            fetch_rows(pool, &mut b, "the audit table", audit_row).await
        }

    };
}
pub(crate) use audit_sql_for;
