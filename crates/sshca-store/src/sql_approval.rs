//! The approvals' SQL, written once for both drivers and expanded by
//! `sql_for!` into the same module.

/// Expands the approvals' SQL for one driver (inside `sql_for!`, whose
/// imports and `fetch_rows` it uses).
macro_rules! approval_sql_for {
    (db = $db:ty, row = $row:ty $(,)?) => {
        fn approval_row(r: &$row) -> std::result::Result<$crate::Approval, sqlx::Error> {
            let votes: String = r.try_get("votes")?;
            let opt = |v: Option<i64>| v.map(from_db);
            Ok($crate::Approval {
                id: r.try_get("id")?,
                policy: r.try_get("policy")?,
                requester: r.try_get("requester")?,
                requester_source: r.try_get("requester_source")?,
                request: r.try_get("request")?,
                created_at: from_db(r.try_get("created_at")?),
                expires_at: from_db(r.try_get("expires_at")?),
                state: r.try_get("state")?,
                votes: serde_json::from_str(&votes).map_err(|e| sqlx::Error::ColumnDecode {
                    index: "votes".into(),
                    source: Box::new(e),
                })?,
                decided_by: r.try_get("decided_by")?,
                decided_at: opt(r.try_get("decided_at")?),
                reason: r.try_get("reason")?,
                serial: opt(r.try_get("serial")?),
                certificate: r.try_get("certificate")?,
                version: from_db(r.try_get("version")?),
            })
        }

        fn votes_json(a: &$crate::Approval) -> Result<String> {
            serde_json::to_string(&a.votes).map_err(|e| {
                Error::new(ErrorKind::Internal, "cannot encode the approvals").with_source(e)
            })
        }

        pub(crate) async fn add_approval(
            pool: &sqlx::Pool<$db>,
            a: &$crate::Approval,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO approvals (id, policy, requester, requester_source, request, \
                 created_at, expires_at, state, votes, decided_by, decided_at, reason, serial, \
                 certificate, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(a.id.clone())
            .bind(a.policy.clone())
            .bind(a.requester.clone())
            .bind(a.requester_source.clone())
            .bind(a.request.clone())
            .bind(to_db(a.created_at))
            .bind(to_db(a.expires_at))
            .bind(a.state.clone())
            .bind(votes_json(a)?)
            .bind(a.decided_by.clone())
            .bind(a.decided_at.map(to_db))
            .bind(a.reason.clone())
            .bind(a.serial.map(to_db))
            .bind(a.certificate.clone())
            .bind(to_db(a.version))
            .execute(pool)
            .await
            .map_err(|e| unavailable("cannot record the approval request", e))?;
            Ok(())
        }

        pub(crate) async fn approval(
            pool: &sqlx::Pool<$db>,
            id: &str,
        ) -> Result<Option<$crate::Approval>> {
            let read = |e| unavailable("cannot read the approval request", e);
            let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
                .bind(id.to_owned())
                .fetch_optional(pool)
                .await
                .map_err(read)?;
            row.map(|r| approval_row(&r).map_err(read)).transpose()
        }

        pub(crate) async fn approvals(
            pool: &sqlx::Pool<$db>,
            state: Option<&str>,
            limit: u32,
        ) -> Result<Vec<$crate::Approval>> {
            let mut b: QueryBuilder<$db> = QueryBuilder::new("SELECT * FROM approvals");
            if let Some(s) = state {
                b.push(" WHERE state = ").push_bind(s.to_owned());
            }
            b.push(" ORDER BY created_at, id LIMIT ")
                .push_bind(i64::from(limit));
            fetch_rows(pool, &mut b, "approval requests", approval_row).await
        }

        pub(crate) async fn update_approval(
            pool: &sqlx::Pool<$db>,
            a: &$crate::Approval,
        ) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE approvals SET state = $1, votes = $2, decided_by = $3, decided_at = $4, \
                 reason = $5, serial = $6, certificate = $7, version = version + 1 \
                 WHERE id = $8 AND version = $9",
            )
            .bind(a.state.clone())
            .bind(votes_json(a)?)
            .bind(a.decided_by.clone())
            .bind(a.decided_at.map(to_db))
            .bind(a.reason.clone())
            .bind(a.serial.map(to_db))
            .bind(a.certificate.clone())
            .bind(a.id.clone())
            .bind(to_db(a.version))
            .execute(pool)
            .await
            .map_err(|e| unavailable("cannot update the approval request", e))?;
            Ok(done.rows_affected() == 1)
        }
    };
}

pub(crate) use approval_sql_for;
