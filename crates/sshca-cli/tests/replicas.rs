//! Several `sshca serve` replicas behind one PostgreSQL (a private cluster
//! started by the test as an unprivileged user, 127.0.0.1, OS-chosen port):
//! 3000 requests at 48 concurrent spread over three replicas, `kill -9` of
//! one replica with clients failing over, PostgreSQL stopped and started
//! again under load, and `sshca store copy` from SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use serve_support::*;
use sshca_testkit::pg::PgCluster;

fn rows_in(config: &std::path::Path, store: &str) -> Vec<Value> {
    store_rows(config, &["--store", store])
}

/// Sends one request to the servers in turn from `start`, moving on after a
/// connection error or a 503 (as `sshca request --server A --server B`
/// does); the serial of the certificate, or `None` when every server failed.
async fn request(
    c: &reqwest::Client,
    urls: &[String],
    start: usize,
    token: &str,
    key: &str,
) -> (Option<u64>, Vec<u16>) {
    let mut statuses = Vec::new();
    for i in 0..urls.len() {
        let url = &urls[(start + i) % urls.len()];
        let r = c
            .post(format!("{url}/v1/sign/ci"))
            .bearer_auth(token)
            .json(&json!({"public_key": key}))
            .send()
            .await;
        let Ok(resp) = r else {
            statuses.push(0);
            continue;
        };
        let status = resp.status().as_u16();
        statuses.push(status);
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                let cert =
                    sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap())
                        .unwrap();
                return (Some(cert.serial()), statuses);
            }
            503 => {
                assert!(v.get("certificate").is_none());
                continue;
            }
            other => panic!("{url}: {other}: {v}"),
        }
    }
    (None, statuses)
}

#[test]
fn three_replicas_one_database() {
    let pg = PgCluster::start();
    let url = pg.database("sshca");
    let s = setup(&format!("store = \"{url}\""), None);
    let replicas: Vec<Service> = (0..3).map(|_| Service::start(&s.dir, &s.config)).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");

    // 3000 requests at 48 concurrent, spread over the replicas.
    let serials = rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..48 {
            let (c, urls, token, key, next) = (
                c.clone(),
                urls.clone(),
                s.ci.clone(),
                key.clone(),
                next.clone(),
            );
            tasks.spawn(async move {
                let mut got = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= 3000 {
                        break got;
                    }
                    let (serial, statuses) = request(&c, &urls, n, &token, &key).await;
                    got.push(serial.unwrap_or_else(|| panic!("no replica answered: {statuses:?}")));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    assert_eq!(serials.len(), 3000);
    let unique: HashSet<u64> = serials.iter().copied().collect();
    assert_eq!(unique.len(), 3000, "a serial was issued twice");
    let rows = rows_in(&s.config, &url);
    let mut count: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        *count.entry(r["serial"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(count.len(), 3000);
    assert!(
        unique.iter().all(|s| count.get(s) == Some(&1)),
        "a certificate is not in the database exactly once"
    );

    // kill -9 of one replica mid-run: the clients fail over; every
    // certificate a client received is in the database.
    let received = Arc::new(Mutex::new(Vec::<u64>::new()));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let (c, urls, token, key, received) = (
                c.clone(),
                urls.clone(),
                s.ci.clone(),
                key.clone(),
                received.clone(),
            );
            tasks.spawn(async move {
                for n in 0..60 {
                    let (serial, statuses) = request(&c, &urls, i + n, &token, &key).await;
                    received.lock().unwrap().push(
                        serial.unwrap_or_else(|| panic!("no replica answered: {statuses:?}")),
                    );
                }
            });
        }
        while received.lock().unwrap().len() < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        replicas[1].signal("-KILL");
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 24 * 60);
    let stored: HashSet<u64> = rows_in(&s.config, &url)
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert!(
        received.iter().all(|s| stored.contains(s)),
        "a received certificate is not in the database"
    );

    // PostgreSQL stopped under load: 503 with Retry-After, never a
    // certificate without its row; back by itself once PostgreSQL is.
    let live = vec![urls[0].clone(), urls[2].clone()];
    rt.block_on(async {
        let (serial, _) = request(&c, &live, 0, &s.ci, &key).await;
        assert!(serial.is_some());
        pg.stop();
        let mut unavailable = 0;
        for n in 0..6 {
            let (serial, statuses) = request(&c, &live, n, &s.ci, &key).await;
            assert!(
                serial.is_none(),
                "a certificate was returned while the database was down"
            );
            assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
            unavailable += statuses.len();
        }
        assert_eq!(unavailable, 12);
        let (st, body) = get(&c, &replicas[0], "/healthz", None).await;
        assert_eq!(st, 503, "{body}");
        pg.restart();
        let mut recovered = false;
        for _ in 0..100 {
            let (serial, _) = request(&c, &live, 0, &s.ci, &key).await;
            if let Some(serial) = serial {
                let stored: HashSet<u64> = rows_in(&s.config, &url)
                    .iter()
                    .map(|r| r["serial"].as_u64().unwrap())
                    .collect();
                assert!(stored.contains(&serial));
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            recovered,
            "the replicas did not recover after PostgreSQL came back"
        );
        for r in [&replicas[0], &replicas[2]] {
            assert_eq!(get(&c, r, "/healthz", None).await.0, 200);
        }
    });
    // Refusals from every live replica are audited in the one database.
    rt.block_on(async {
        for r in [&replicas[0], &replicas[2]] {
            let (st, _, _) = sign(
                &c,
                r,
                "ci",
                Some("sshca_not-a-token"),
                &json!({"public_key": key}),
            )
            .await;
            assert_eq!(st, 401);
        }
    });
    let mut audited = 0;
    for _ in 0..100 {
        let out = run(sshca()
            .arg("--config")
            .arg(&s.config)
            .args(["audit", "--json", "--store", &url]));
        let audit: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        audited = audit
            .iter()
            .filter(|e| e["code"] == "unauthenticated")
            .count();
        if audited == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(audited, 2);
}

#[test]
fn store_copy_from_sqlite_to_postgres_keeps_every_row() {
    let pg = PgCluster::start();
    let s = setup("", None);
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(
        "\n[policy.hosts]\nca = \"users\"\ncert_type = \"host\"\n\n[join.fleet]\nmethod = \"token\"\npolicy = \"hosts\"\n",
    );
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");
    rt.block_on(async {
        for i in 0..40 {
            let token = if i % 4 == 0 { &s.other } else { &s.ci };
            sign(&c, &svc, "ci", Some(token), &json!({"public_key": key})).await;
        }
    });
    drop(svc);
    let sqlite = format!("sqlite:{}", s.dir.join("data/sshca.db").display());
    run(sshca().arg("--config").arg(&s.config).args([
        "token",
        "join",
        "fleet",
        "--principal",
        "h1.example.com",
        "--store",
        &sqlite,
    ]));
    // An instance that joined by its cloud identity stays joined.
    rt.block_on(async {
        let st = sshca_store::open(&sqlite, &Default::default())
            .await
            .unwrap();
        assert!(st
            .claim_instance("aws", "111111111111/i-1", 5)
            .await
            .unwrap());
    });
    let target = pg.database("copy");
    run(sshca().args(["store", "migrate", "--store", &target]));
    let out = run(sshca().args(["store", "copy", "--from", &sqlite, "--to", &target]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("30 certificates")
            // Ten refusals, the thirty issuances and the join token made.
            && said.contains("41 audit")
            && said.contains("1 join tokens")
            && said.contains("1 joined instances"),
        "{said}"
    );
    rt.block_on(async {
        let st = sshca_store::open(&target, &Default::default())
            .await
            .unwrap();
        assert!(!st
            .claim_instance("aws", "111111111111/i-1", 6)
            .await
            .unwrap());
    });
    assert_eq!(rows_in(&s.config, &sqlite), rows_in(&s.config, &target));
    // The copied trail verifies with the same chain heads.
    let heads = |store: &str| {
        let out = run(sshca().args(["audit", "verify", "--store", store]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("head "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let source_heads = heads(&sqlite);
    assert!(!source_heads.is_empty());
    assert_eq!(source_heads, heads(&target));
    let audit = |store: &str| {
        let out = run(sshca().args(["audit", "--json", "--limit", "1000", "--store", store]));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    assert_eq!(audit(&sqlite), audit(&target));
    // Copying again into a store that has rows is refused, not doubled.
    let out = sshca()
        .args(["store", "copy", "--from", &sqlite, "--to", &target])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}
