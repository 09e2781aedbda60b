//! `sshca audit verify` finds an edited, a deleted and a reordered row and
//! a cut tail; `sshca audit export` writes a range that `ssh-keygen -Y
//! verify` accepts; `sshca revoke`, `sshca krl build` and `sshca ca
//! rotate` write their events to the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use sqlx::Connection;

fn verify(store: &str, extra: &[&str]) -> Output {
    sshca()
        .args(["audit", "verify", "--store", store])
        .args(extra)
        .output()
        .unwrap()
}

async fn sql(db: &Path, statement: &str) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    sqlx::query(statement).execute(&mut c).await.unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A store `name` in `dir` with six refusal events; its file and URL.
async fn seeded(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let db = dir.join(name);
    let url = format!("sqlite:{}", db.display());
    let store = sshca_store::open(&url, &Default::default()).await.unwrap();
    for n in 1..=6u64 {
        let e = sshca_store::AuditEvent {
            status: 401,
            outcome: "refused".into(),
            code: "unauthenticated".into(),
            reason: format!("reason {n}"),
            ..sshca_store::AuditEvent::new("refuse", &format!("r{n}"), 1_700_000_000 + n)
        };
        store.audit(&e).await.unwrap();
    }
    (db, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_finds_every_change_and_the_export_verifies() {
    let d = tempfile::tempdir().unwrap();
    let (db, url) = seeded(d.path(), "sshca.db").await;
    let ok = verify(&url, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(said.contains("6 audit rows, 1 chain(s) intact"), "{said}");

    // The export: JSON lines, the head, an SSHSIG ssh-keygen accepts.
    let key = keygen(d.path(), "audit_key", "ed25519", None);
    let export = d.path().join("range.jsonl");
    run(sshca()
        .args(["audit", "export", "--store", &url])
        .args([
            "--since",
            "2023-11-14T22:13:22Z",
            "--until",
            "2023-11-14T22:13:25Z",
        ])
        .arg("--sign-with")
        .arg(format!("file:{}", key.display()))
        .arg("-o")
        .arg(&export));
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<_> = lines.iter().filter(|l| l["type"] == "refuse").collect();
    assert_eq!(
        events
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["reason 2", "reason 3", "reason 4"]
    );
    assert!(events
        .iter()
        .all(|e| e["v"] == 1 && e["id"].as_str().unwrap().len() == 32));
    let head = lines.last().unwrap();
    assert_eq!(head["type"], "chain_head");
    assert_eq!(head["seq"], 6);
    let allowed = d.path().join("allowed_signers");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(&allowed, format!("auditor {public}")).unwrap();
    let checked = with_stdin(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "auditor", "-n", "sshca-audit", "-s"])
            .arg(format!("{}.sig", export.display())),
        text.as_bytes(),
    );
    assert!(checked.status.success(), "{}", stderr(&checked));
    // A changed export does not verify.
    let forged = with_stdin(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "auditor", "-n", "sshca-audit", "-s"])
            .arg(format!("{}.sig", export.display())),
        text.replace("reason 3", "reason 9").as_bytes(),
    );
    assert!(!forged.status.success());

    // Each change (to a store of its own) is found, naming the row.
    let cases: [(&str, &str); 4] = [
        (
            "UPDATE audit SET body = replace(body, 'reason 3', 'reason 9'), reason = 'reason 9' WHERE seq = 3",
            "row 3 was edited",
        ),
        ("UPDATE audit SET reason = 'nothing happened' WHERE seq = 4", "columns were edited"),
        ("DELETE FROM audit WHERE seq = 2", "are missing (deleted)"),
        ("SWAP rows 4 and 5", "reordered"),
    ];
    for (i, (statement, want)) in cases.into_iter().enumerate() {
        let (db, url) = seeded(d.path(), &format!("case{i}.db")).await;
        // SQLite checks the primary key per row: swap through a free id.
        if statement.starts_with("SWAP") {
            sql(&db, "UPDATE audit SET id = 100 WHERE id = 4").await;
            sql(&db, "UPDATE audit SET id = 4 WHERE id = 5").await;
            sql(&db, "UPDATE audit SET id = 5 WHERE id = 100").await;
        } else {
            sql(&db, statement).await;
        }
        let out = verify(&url, &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{statement}: {} {}",
            stderr(&out),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr(&out).contains(want), "{statement}: {}", stderr(&out));
    }
    // A cut tail leaves a shorter, intact chain; the export's head finds it.
    sql(&db, "DELETE FROM audit WHERE seq >= 5").await;
    let shorter = verify(&url, &[]);
    assert!(shorter.status.success(), "{}", stderr(&shorter));
    let cut = verify(&url, &["--heads-from", export.to_str().unwrap()]);
    assert_eq!(cut.status.code(), Some(1));
    assert!(
        stderr(&cut).contains("its tail was cut"),
        "{}",
        stderr(&cut)
    );
    let bad_head = sshca()
        .args(["audit", "verify", "--store", &url, "--head", "nonsense"])
        .output()
        .unwrap();
    assert!(!bad_head.status.success());
    assert!(
        stderr(&bad_head).contains("REPLICA:SEQ:HASH"),
        "{}",
        stderr(&bad_head)
    );
    // Bare `sshca audit` still lists the newest events.
    let listed = run(sshca().args(["audit", "--store", &url, "--limit", "2"]));
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("reason 4") && listed.contains("reason 3") && !listed.contains("reason 2"),
        "{listed}"
    );
    // An export with a key that does not open leaves nothing behind.
    let none = d.path().join("none.jsonl");
    let failed = sshca()
        .args([
            "audit",
            "export",
            "--store",
            &url,
            "--since",
            "2020-01-01T00:00:00Z",
        ])
        .args(["--sign-with", "file:/nonexistent/key", "-o"])
        .arg(&none)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(!none.exists());
}
