//! The conformance suite's approval requests: kept once, read back as
//! written, listed by state, and changed by compare-and-set.

use std::sync::Arc;

use crate::Store;

pub(super) async fn approvals_change_once(store: Arc<dyn Store>) {
    use crate::{Approval, Vote};
    let a = Approval {
        id: "ap-1".into(),
        policy: "root".into(),
        requester: "alice".into(),
        requester_source: "token".into(),
        request: r#"{"public_key":"ssh-ed25519 AAAA"}"#.into(),
        created_at: 100,
        expires_at: 1_000,
        state: "pending".into(),
        votes: vec![],
        decided_by: None,
        decided_at: None,
        reason: None,
        serial: None,
        certificate: None,
        version: 0,
    };
    store.add_approval(&a).await.unwrap();
    assert!(store.add_approval(&a).await.is_err(), "an id is kept once");
    assert_eq!(store.approval("ap-1").await.unwrap().unwrap(), a);
    assert!(store.approval("ap-2").await.unwrap().is_none());
    // Two replicas vote from the same version at once: one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for who in ["token:bob", "token:carol"] {
        let (s, mut mine) = (store.clone(), a.clone());
        mine.votes.push(Vote {
            by: who.into(),
            at: 200,
        });
        tasks.spawn(async move { s.update_approval(&mine).await.unwrap() });
    }
    let wins: Vec<bool> = tasks.join_all().await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    let now = store.approval("ap-1").await.unwrap().unwrap();
    assert_eq!((now.version, now.votes.len()), (1, 1));
    let done = Approval {
        state: "approved".into(),
        decided_by: Some("token:bob".into()),
        decided_at: Some(300),
        serial: Some(u64::MAX),
        certificate: Some("ssh-ed25519-cert-v01@openssh.com AAAA".into()),
        ..now.clone()
    };
    assert!(store.update_approval(&done).await.unwrap());
    assert!(
        !store.update_approval(&done).await.unwrap(),
        "stale version"
    );
    let got = store.approval("ap-1").await.unwrap().unwrap();
    assert_eq!(got, Approval { version: 2, ..done });
    let later = Approval {
        id: "ap-2".into(),
        created_at: 150,
        ..a.clone()
    };
    store.add_approval(&later).await.unwrap();
    let pending = store.approvals(Some("pending"), 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["ap-2"]
    );
    assert_eq!(store.approvals(None, 10).await.unwrap().len(), 2);
    assert_eq!(store.approvals(None, 1).await.unwrap()[0].id, "ap-1");
}
