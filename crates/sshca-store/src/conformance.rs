//! The store conformance suite (feature `conformance`): what every
//! [`Store`] must do, run against SQLite and PostgreSQL alike. `open` must
//! open the same, initially empty, database each time it is called.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use crate::{AuditEvent, CertQuery, IssuedCert, Recorded, Revocation, RevocationTarget, Store};

mod approvals;

/// A certificate row for tests.
pub fn cert(serial: u64, requester: &str) -> IssuedCert {
    IssuedCert {
        ca_fingerprint: "SHA256:ca".into(),
        serial,
        key_id: format!("id-{serial}"),
        cert_type: "user".into(),
        principals: vec!["alice".into(), format!("p{serial}")],
        valid_after: 1,
        valid_before: u64::MAX,
        subject_fingerprint: "SHA256:subject".into(),
        requester: requester.into(),
        requester_source: Some("token".into()),
        policy: "dev".into(),
        issued_at: 10,
        certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        renews: None,
        chain_start: None,
    }
}

/// An audit row for tests.
pub fn event(n: u64) -> AuditEvent {
    AuditEvent {
        id: format!("e{n}"),
        at: n,
        request_id: format!("r{n}"),
        kind: "refuse".into(),
        identity: (n % 2 == 0).then(|| "ci".to_string()),
        auth_source: Some("token".into()),
        status: 401,
        outcome: "refused".into(),
        code: "unauthenticated".into(),
        reason: format!("reason {n}"),
        ..AuditEvent::default()
    }
}

/// Runs every check.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let store = open().await;
    records_queries_and_refuses_a_second_serial(&*store).await;
    one_serial_twice_at_once_is_stored_once(store.clone()).await;
    concurrent_writes_are_all_committed(store.clone()).await;
    audit_rows(&*store).await;
    paging(&*store).await;
    revocations_and_krl_versions(store.clone()).await;
    renewal_links_and_nonces(store.clone()).await;
    join_tokens(store.clone()).await;
    instances_join_once(store.clone()).await;
    approvals::approvals_change_once(store.clone()).await;
    store.health().await.unwrap();
    assert!(!store.describe().is_empty());
    // Everything is there after reopening.
    let before = store
        .certs(&CertQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    drop(store);
    let store = open().await;
    let after = store
        .certs(&CertQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before, after);
    // A certificate and its issuance event go in together; a taken serial
    // writes neither.
    let issued = AuditEvent {
        kind: "issue".into(),
        status: 200,
        outcome: "allowed".into(),
        code: "issued".into(),
        ..event(99)
    }
    .with_cert(&cert(4242, "ci"));
    assert_eq!(
        store
            .record_audited(&cert(4242, "ci"), &issued)
            .await
            .unwrap(),
        Recorded::Stored
    );
    let again = AuditEvent {
        id: "e-again".into(),
        ..issued.clone()
    };
    assert_eq!(
        store
            .record_audited(&cert(4242, "ci"), &again)
            .await
            .unwrap(),
        Recorded::SerialTaken
    );
    let newest = store.audit_events(2).await.unwrap();
    assert_eq!(newest[0], issued);
    assert_eq!(newest[0].serial, Some(4242));
    assert!(newest.iter().all(|e| e.id != "e-again"));
    // Two handles on one database appending to the same chain at once
    // (two processes with one replica id) leave one intact chain.
    let other = open().await;
    let mut tasks = Vec::new();
    for n in 100..140u64 {
        let s = if n % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move { s.audit(&event(n)).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut v = crate::chain::Verifier::new(Vec::new());
    for r in store.audit_rows(0, 1000).await.unwrap() {
        v.push(&r).unwrap();
    }
    let report = v.finish().unwrap();
    assert_eq!(report.heads.len(), 1);
    assert_eq!(report.heads[0].seq, 46);
    assert_eq!(store.audit_heads().await.unwrap(), report.heads);
    let replica = &report.heads[0].replica_id;
    assert_eq!(
        store.audit_head(replica).await.unwrap().as_ref(),
        Some(&report.heads[0])
    );
    assert_eq!(store.audit_head("no-such-replica").await.unwrap(), None);
}

async fn records_queries_and_refuses_a_second_serial(store: &dyn Store) {
    assert_eq!(
        store.record(&cert(7, "ci")).await.unwrap(),
        Recorded::Stored
    );
    assert_eq!(
        store.record(&cert(u64::MAX, "bob")).await.unwrap(),
        Recorded::Stored
    );
    let mut again = cert(7, "other");
    again.key_id = "different".into();
    assert_eq!(store.record(&again).await.unwrap(), Recorded::SerialTaken);
    // The same serial under another CA is fine.
    again.ca_fingerprint = "SHA256:other-ca".into();
    assert_eq!(store.record(&again).await.unwrap(), Recorded::Stored);

    assert_eq!(store.certs(&CertQuery::default()).await.unwrap().len(), 3);
    let q = |f: fn(&mut CertQuery)| {
        let mut q = CertQuery::default();
        f(&mut q);
        q
    };
    let got = store
        .certs(&q(|q| q.serial = Some(u64::MAX)))
        .await
        .unwrap();
    assert_eq!(got, vec![cert(u64::MAX, "bob")]);
    let got = store
        .certs(&q(|q| q.principal = Some("p7".into())))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    let got = store
        .certs(&q(|q| q.principal = Some("p".into())))
        .await
        .unwrap();
    assert!(got.is_empty(), "a principal matched as a substring");
    let got = store
        .certs(&q(|q| q.requester = Some("ci".into())))
        .await
        .unwrap();
    assert_eq!(got, vec![cert(7, "ci")]);
    let got = store
        .certs(&q(|q| q.key_id = Some("different".into())))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ca_fingerprint, "SHA256:other-ca");
    let got = store
        .certs(&q(|q| q.ca_fingerprint = Some("SHA256:other-ca".into())))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let got = store.certs(&q(|q| q.limit = 1)).await.unwrap();
    assert_eq!(got.len(), 1);
    // Newest first.
    assert_eq!(got[0].ca_fingerprint, "SHA256:other-ca");

    // The same name from another source is another identity; rows from
    // before sources were kept belong to tokens and client certificates.
    let oidc = IssuedCert {
        requester_source: Some("oidc:github".into()),
        ..cert(9001, "ci")
    };
    let old = IssuedCert {
        requester_source: None,
        ..cert(9002, "ci")
    };
    for c in [&oidc, &old] {
        assert_eq!(store.record(c).await.unwrap(), Recorded::Stored);
    }
    let mine = |source: &'static str| async move {
        let mut got: Vec<u64> = store
            .certs(&CertQuery {
                requester: Some("ci".into()),
                requester_source: Some(source.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.serial)
            .collect();
        got.sort_unstable();
        got
    };
    assert_eq!(mine("token").await, [7, 9002]);
    assert_eq!(mine("client-cert").await, [9002]);
    assert_eq!(mine("oidc:github").await, [9001]);
    assert!(mine("oidc:corp").await.is_empty());
    let got = store.certs(&q(|q| q.serial = Some(9001))).await.unwrap();
    assert_eq!(got, vec![oidc]);
}

async fn renewal_links_and_nonces(store: Arc<dyn Store>) {
    // A renewal keeps its link and its chain's start.
    let renewal = IssuedCert {
        renews: Some(77),
        chain_start: Some(5),
        ..cert(78, "renewer")
    };
    assert_eq!(store.record(&renewal).await.unwrap(), Recorded::Stored);
    let got = store
        .certs(&CertQuery {
            serial: Some(78),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got, std::slice::from_ref(&renewal));
    assert_eq!(got[0].chain_started(), 5);
    assert_eq!(cert(1, "x").chain_started(), 10);

    // A nonce is used once, even by many at once; forgotten after it expires.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = store.clone();
        tasks.spawn(async move {
            s.use_nonce("00112233445566778899aabbccddeeff", 1_000, 900)
                .await
        });
    }
    let mut firsts = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().unwrap() {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1);
    assert!(!store
        .use_nonce("00112233445566778899aabbccddeeff", 1_000, 999)
        .await
        .unwrap());
    assert!(store
        .use_nonce("00112233445566778899aabbccddeeff", 2_000, 1_001)
        .await
        .unwrap());
    assert!(store
        .use_nonce("ffeeddccbbaa99887766554433221100", 2_000, 1_001)
        .await
        .unwrap());
}

async fn join_tokens(store: Arc<dyn Store>) {
    use crate::{JoinRefusal, JoinToken};
    let t = JoinToken {
        id: "a1b2".into(),
        join: "fleet".into(),
        token_hash: "h1".into(),
        principals: vec!["web1.example.com".into()],
        expires_at: 1_000,
        uses_left: 2,
        created_at: 10,
        created_by: "local".into(),
    };
    store.add_join_token(&t).await.unwrap();
    assert_eq!(
        store.join_token("fleet", "h1", 500).await.unwrap(),
        Ok(t.clone())
    );
    assert_eq!(
        store.join_token("other", "h1", 500).await.unwrap(),
        Err(JoinRefusal::Unknown)
    );
    assert_eq!(
        store.join_token("fleet", "nope", 500).await.unwrap(),
        Err(JoinRefusal::Unknown)
    );
    assert_eq!(
        store.join_token("fleet", "h1", 1_000).await.unwrap(),
        Err(JoinRefusal::Expired)
    );
    // Two uses, taken by many at once: exactly two succeed.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.spawn(async move { s.consume_join_token("fleet", "h1", 500).await });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap().unwrap() {
            Ok(got) => {
                assert_eq!(got.principals, t.principals);
                ok += 1;
            }
            Err(why) => assert_eq!(why, JoinRefusal::Used),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(
        store.join_token("fleet", "h1", 500).await.unwrap(),
        Err(JoinRefusal::Used)
    );
    let late = JoinToken {
        id: "c3d4".into(),
        token_hash: "h2".into(),
        ..t
    };
    store.add_join_token(&late).await.unwrap();
    assert_eq!(
        store
            .consume_join_token("fleet", "h2", 2_000)
            .await
            .unwrap(),
        Err(JoinRefusal::Expired)
    );
}

async fn instances_join_once(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.spawn(async move { s.claim_instance("aws", "123456789012/i-0abc", 10).await });
    }
    let mut first = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().unwrap() {
            first += 1;
        }
    }
    assert_eq!(first, 1);
    // Another join, or another instance, is a first time of its own.
    assert!(store
        .claim_instance("gcp", "123456789012/i-0abc", 11)
        .await
        .unwrap());
    assert!(store
        .claim_instance("aws", "123456789012/i-0abd", 11)
        .await
        .unwrap());
    assert!(!store
        .claim_instance("aws", "123456789012/i-0abc", 12)
        .await
        .unwrap());
    // Released (its certificates were not issued), it may join again.
    store
        .release_instance("aws", "123456789012/i-0abd")
        .await
        .unwrap();
    assert!(store
        .claim_instance("aws", "123456789012/i-0abd", 11)
        .await
        .unwrap());
    let all = store.joined_instances().await.unwrap();
    let seen: Vec<(&str, &str, u64)> = all
        .iter()
        .map(|j| (j.join.as_str(), j.instance.as_str(), j.enrolled_at))
        .collect();
    assert_eq!(
        seen,
        [
            ("aws", "123456789012/i-0abc", 10),
            ("aws", "123456789012/i-0abd", 11),
            ("gcp", "123456789012/i-0abc", 11),
        ]
    );
}

async fn one_serial_twice_at_once_is_stored_once(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let s = store.clone();
        tasks.spawn(async move { s.record(&cert(42, &format!("r{i}"))).await });
    }
    let mut stored = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().unwrap() == Recorded::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    let q = CertQuery {
        serial: Some(42),
        ..Default::default()
    };
    assert_eq!(store.certs(&q).await.unwrap().len(), 1);
}

async fn concurrent_writes_are_all_committed(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1000..1200u64 {
        let s = store.clone();
        tasks.spawn(async move { s.record(&cert(i, "bulk")).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), Recorded::Stored);
    }
    let q = CertQuery {
        requester: Some("bulk".into()),
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(store.certs(&q).await.unwrap().len(), 200);
}

async fn audit_rows(store: &dyn Store) {
    for n in 1..=5 {
        store.audit(&event(n)).await.unwrap();
    }
    let got = store.audit_events(3).await.unwrap();
    assert_eq!(got, vec![event(5), event(4), event(3)]);
    // Each row is linked into the store's chain, and the chain verifies.
    let rows = store.audit_rows(0, 100).await.unwrap();
    let mut v = crate::chain::Verifier::new(store.audit_heads().await.unwrap());
    for r in &rows {
        assert!(r.link.is_some() && r.body.is_some(), "{r:?}");
        v.push(r).unwrap();
    }
    let report = v.finish().unwrap();
    assert_eq!(report.rows, 5);
    assert_eq!(report.heads.len(), 1);
    assert_eq!(report.heads[0].seq, 5);
}

async fn paging(store: &dyn Store) {
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.certs_after(after, 50).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0].0 < w[1].0));
        after = page.last().unwrap().0;
        seen.extend(page.into_iter().map(|(_, c)| c));
    }
    let all = store
        .certs(&CertQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen.len(), all.len());
    let events = store.audit_after(0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        (1..=5).map(event).collect::<Vec<_>>()
    );
}

fn revocation(ca: &str, target: RevocationTarget) -> Revocation {
    Revocation {
        ca: ca.into(),
        target,
        reason: "key lost".into(),
        revoked_by: "admin".into(),
        revoked_at: 77,
    }
}

async fn revocations_and_krl_versions(store: Arc<dyn Store>) {
    let targets = [
        RevocationTarget::Serials {
            from: 9_001,
            to: 9_001,
        },
        RevocationTarget::Serials {
            from: 5,
            to: u64::MAX,
        },
        RevocationTarget::KeyId {
            key_id: "id-9002".into(),
        },
        RevocationTarget::Key {
            fingerprint: "SHA256:abc".into(),
        },
        RevocationTarget::CaKey {
            public_key: "ssh-ed25519 AAAA".into(),
        },
    ];
    assert_eq!(store.revocation_mark("main").await.unwrap(), (0, 0));
    for t in &targets {
        store.revoke(&revocation("main", t.clone())).await.unwrap();
    }
    store
        .revoke(&revocation(
            "other",
            RevocationTarget::Serials {
                from: 9_002,
                to: 9_002,
            },
        ))
        .await
        .unwrap();
    let got = store.revocations(Some("main")).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.target.clone()).collect::<Vec<_>>(),
        targets
    );
    assert_eq!(got[0], revocation("main", targets[0].clone()));
    assert_eq!(store.revocations(None).await.unwrap().len(), 6);
    let (n, last) = store.revocation_mark("main").await.unwrap();
    assert_eq!(n, 5);
    store
        .revoke(&revocation(
            "main",
            RevocationTarget::Serials {
                from: 9_003,
                to: 9_003,
            },
        ))
        .await
        .unwrap();
    let (n2, last2) = store.revocation_mark("main").await.unwrap();
    assert_eq!(n2, 6);
    assert!(last2 > last);

    // Serial 9001: its only certificate expired at 100; 9003: one expired,
    // one valid; 9004 revoked but unknown to the store.
    let ca = "SHA256:krl-ca".to_string();
    let mut c = cert(9_001, "x");
    c.ca_fingerprint = ca.clone();
    c.valid_before = 100;
    assert_eq!(store.record(&c).await.unwrap(), Recorded::Stored);
    let mut c = cert(9_003, "x");
    c.ca_fingerprint = ca.clone();
    c.valid_before = 100;
    store.record(&c).await.unwrap();
    let mut c = cert(9_003, "x");
    c.ca_fingerprint = "SHA256:krl-ca-next".into();
    c.valid_before = u64::MAX;
    store.record(&c).await.unwrap();
    store
        .revoke(&revocation(
            "main",
            RevocationTarget::Serials {
                from: 9_004,
                to: 9_004,
            },
        ))
        .await
        .unwrap();
    let keys = [ca.clone(), "SHA256:krl-ca-next".into()];
    assert_eq!(
        store
            .expired_revoked_serials("main", &keys, 200)
            .await
            .unwrap(),
        [9_001]
    );
    assert!(store
        .expired_revoked_serials("main", &keys, 50)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .expired_revoked_serials("main", &[], 200)
        .await
        .unwrap()
        .is_empty());
    assert!(store.has_unexpired(&ca, 50).await.unwrap());
    assert!(!store.has_unexpired(&ca, 100).await.unwrap());
    assert!(store
        .has_unexpired("SHA256:krl-ca-next", u64::MAX - 1)
        .await
        .unwrap());
    assert!(!store.has_unexpired("SHA256:none", 0).await.unwrap());

    // KRL versions: strictly increasing under concurrent builders, never
    // below the floor asked for.
    let first = store.next_krl_version("main", 0).await.unwrap();
    assert!(first >= 1);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.next_krl_version("main", 0).await.unwrap()
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(
            seen.insert(t.await.unwrap()),
            "a KRL version handed out twice"
        );
    }
    assert!(*seen.iter().next().unwrap() > first);
    let floor = store.next_krl_version("main", 1_800_000_000).await.unwrap();
    assert_eq!(floor, 1_800_000_000);
    assert_eq!(
        store.next_krl_version("main", 5).await.unwrap(),
        1_800_000_001
    );
    assert_eq!(store.next_krl_version("other", 0).await.unwrap(), 1);
    let versions = store.krl_versions().await.unwrap();
    assert!(versions.contains(&("main".to_string(), 1_800_000_001)));
    assert!(versions.contains(&("other".to_string(), 1)));
}
