//! `GET /v1/certs` and `GET /v1/certs/{serial}`: an identity sees its own
//! certificates, an admin every one; queries are checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_certificates_or_all_for_admins() {
    let s = setup("", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_a");
    let (st, v, _) = sign(
        &c,
        &svc,
        "ci",
        Some(&s.ci),
        &json!({"public_key": key, "principals": ["alice"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let deploy = s.client(Some("deploy.pem"));
    let (st, _, _) = sign(&deploy, &svc, "ci", None, &json!({"public_key": key})).await;
    assert_eq!(st, 200);

    let (st, mine) = get_json(&c, &svc, "/v1/certs", Some(&s.ci)).await;
    assert_eq!(st, 200);
    let mine = mine["certs"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert!(mine.iter().all(|r| r["requester"] == "ci"));
    let serial = mine[0]["serial"].as_u64().unwrap();
    assert_eq!(
        get(
            &c,
            &svc,
            "/v1/certs?requester=deploy.example.com",
            Some(&s.ci)
        )
        .await
        .0,
        403
    );
    let (_, all) = get_json(&c, &svc, "/v1/certs", Some(&s.admin)).await;
    assert_eq!(all["certs"].as_array().unwrap().len(), 2);
    let (_, alice) = get_json(&c, &svc, "/v1/certs?principal=alice", Some(&s.admin)).await;
    assert_eq!(alice["certs"].as_array().unwrap().len(), 1);
    let (st, row) = get_json(&c, &svc, &format!("/v1/certs/{serial}"), Some(&s.admin)).await;
    assert_eq!(st, 200, "{row}");
    assert_eq!(row["serial"].as_u64(), Some(serial));
    assert!(row["certificate"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519-cert-v01@openssh.com "));
    assert_eq!(
        get(&c, &svc, &format!("/v1/certs/{serial}"), Some(&s.other))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&c, &svc, "/v1/certs/twelve", Some(&s.admin)).await.0,
        400
    );
    for q in ["limit=many", "colour=red", "serial=x"] {
        assert_eq!(
            get(&c, &svc, &format!("/v1/certs?{q}"), Some(&s.admin))
                .await
                .0,
            400,
            "{q}"
        );
    }
    assert_eq!(get(&c, &svc, "/v1/certs", None).await.0, 401);
}
