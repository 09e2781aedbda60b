//! Audit sinks against real receivers started here: a file (reopened on
//! SIGHUP), syslog over UDP and TCP, and an HTTPS receiver that checks the
//! signature; a sink that is down and a restart lose nothing; a required
//! sink fails issuance closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::receiver;
use support::*;

/// Waits until `f` says yes (40 s at most: a sink that was down retries
/// with a backoff of up to 30 s).
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] != "chain_head")
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn file_and_syslog_sinks_get_every_event_and_sighup_reopens_the_file() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let log_socket = sockets.path().join("log");
    let unix = tokio::net::UnixDatagram::bind(&log_socket).unwrap();
    let s = setup(
        "",
        &format!(
            r#"
[audit.file]
type = "file"
path = "data/audit.jsonl"

[audit.unix]
type = "syslog"
address = "unix:{}"

[audit.udp]
type = "syslog"
address = "udp://{}"

[audit.tcp]
type = "syslog"
address = "tcp://{}"
"#,
            log_socket.display(),
            udp.local_addr().unwrap(),
            tcp.local_addr().unwrap()
        ),
    );
    let unix_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let u = unix_lines.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = unix.recv(&mut buf).await {
            u.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let datagrams = Arc::new(Mutex::new(Vec::<String>::new()));
    let d = datagrams.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = udp.recv(&mut buf).await {
            d.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let framed = Arc::new(Mutex::new(Vec::<u8>::new()));
    let f = framed.clone();
    tokio::spawn(async move {
        let (mut conn, _) = tcp.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            use tokio::io::AsyncReadExt;
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => f.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let req = json!({"public_key": s.pubkey("alice")});
    let mut serials = Vec::new();
    for _ in 0..3 {
        let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
        assert_eq!(st, 200, "{b}");
        serials.push(b["serial"].as_str().unwrap().to_owned());
    }
    let (st, _, _) = sign(&c, &svc, "ci", Some("wrong-token"), &req).await;
    assert_eq!(st, 401);

    let file = s.dir.join("data/audit.jsonl");
    let got = until("4 events in the file", || {
        let e = events(&read(&file));
        (e.len() == 4).then_some(e)
    })
    .await;
    let issued: Vec<_> = got.iter().filter(|e| e["type"] == "issue").collect();
    assert_eq!(
        issued
            .iter()
            .map(|e| e["serial"].as_u64().unwrap().to_string())
            .collect::<Vec<_>>(),
        serials
    );
    for e in &issued {
        assert_eq!(e["v"], 1);
        assert_eq!(e["identity"], "ci");
        assert_eq!(e["auth_source"], "token");
        assert_eq!(e["policy"], "ci");
        assert_eq!(e["outcome"], "allowed");
        assert_eq!(e["principals"], json!(["deploy"]));
        assert!(e["subject_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:"));
        assert!(e["ca_fingerprint"].as_str().unwrap().starts_with("SHA256:"));
        assert!(e["valid_before"].as_u64().unwrap() > e["valid_after"].as_u64().unwrap());
    }
    let refused = got.iter().find(|e| e["type"] == "refuse").unwrap();
    assert_eq!(refused["code"], "unauthenticated");
    assert_eq!(refused["outcome"], "refused");
    // The chain's head follows once the sink has caught up.
    until("the chain head in the file", || {
        read(&file).contains("\"chain_head\"").then_some(())
    })
    .await;

    // RFC 5424 over UDP: authpriv.info for issuance, .warning for refusals.
    let lines = until("4 syslog datagrams", || {
        let d = datagrams.lock().unwrap().clone();
        let ev: Vec<_> = d
            .into_iter()
            .filter(|l| !l.contains("chain_head"))
            .collect();
        (ev.len() == 4).then_some(ev)
    })
    .await;
    let rfc5424 = |l: &str, pri: &str, msgid: &str| {
        let parts: Vec<&str> = l.splitn(8, ' ').collect();
        assert_eq!(parts[0], format!("<{pri}>1"), "{l}");
        assert!(parts[1].ends_with('Z') && parts[1].contains('T'), "{l}");
        assert_eq!(parts[3], "sshca", "{l}");
        assert_eq!(parts[5], msgid, "{l}");
        assert_eq!(parts[6], "-", "{l}");
        serde_json::from_str::<Value>(parts[7]).unwrap()
    };
    let mut kinds = Vec::new();
    for l in &lines {
        let pri = if l.contains(" refuse - ") { "84" } else { "86" };
        let msgid = if pri == "84" { "refuse" } else { "issue" };
        kinds.push(rfc5424(l, pri, msgid)["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds.iter().filter(|k| *k == "issue").count(), 3);
    // Octet counting over TCP: LEN SP MESSAGE, back to back.
    let frames = until("4 framed syslog messages", || {
        let bytes = framed.lock().unwrap().clone();
        let mut rest = bytes.as_slice();
        let mut out = Vec::new();
        while let Some(sp) = rest.iter().position(|b| *b == b' ') {
            let n: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            if rest.len() < sp + 1 + n {
                break;
            }
            out.push(String::from_utf8(rest[sp + 1..sp + 1 + n].to_vec()).unwrap());
            rest = &rest[sp + 1 + n..];
        }
        let ev: Vec<_> = out
            .into_iter()
            .filter(|l| !l.contains("chain_head"))
            .collect();
        (ev.len() == 4).then_some(ev)
    })
    .await;
    assert!(frames.iter().all(|f| f.starts_with("<8")), "{frames:?}");
    // And over a unix datagram socket (as to /dev/log).
    let local = until("4 messages on the unix socket", || {
        let l = unix_lines.lock().unwrap().clone();
        let ev: Vec<_> = l
            .into_iter()
            .filter(|l| !l.contains("chain_head"))
            .collect();
        (ev.len() == 4).then_some(ev)
    })
    .await;
    assert!(
        local
            .iter()
            .all(|l| l.starts_with("<8") && l.contains(" sshca ")),
        "{local:?}"
    );

    // logrotate: the file is moved, SIGHUP, the next event opens a new one.
    let rotated = s.dir.join("data/audit.jsonl.1");
    std::fs::rename(&file, &rotated).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    let fresh = until("the event in the reopened file", || {
        let e = events(&read(&file));
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        fresh[0]["serial"].as_u64().unwrap().to_string(),
        b["serial"].as_str().unwrap()
    );
    assert_eq!(events(&read(&rotated)).len(), 4);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    svc.stop().await;
}

/// An HTTPS receiver: checks each batch's signature, keeps the events in
/// order, answers 503 while `down`.
struct Receiver {
    url: String,
    ca: std::path::PathBuf,
    events: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    bad_signatures: Arc<AtomicUsize>,
}

const SECRET: &str = "0123456789abcdef-audit-secret";

impl Receiver {
    async fn start(dir: &Path) -> Receiver {
        let events = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicUsize::new(0));
        let (ev, dn, bd) = (events.clone(), down.clone(), bad.clone());
        let handler: receiver::Handler = Arc::new(move |sig, body| {
            let status = if dn.load(Ordering::SeqCst) {
                503
            } else if !receiver::check_signature(SECRET, &sig, &body) {
                bd.fetch_add(1, Ordering::SeqCst);
                401
            } else {
                let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                ev.lock().unwrap().extend(batch);
                200
            };
            Box::pin(async move { (status, Vec::new()) })
        });
        let (url, ca) = receiver::start(dir, handler).await;
        Receiver {
            url,
            ca,
            events,
            down,
            bad_signatures: bad,
        }
    }

    fn issued(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] != "chain_head")
            .cloned()
            .collect()
    }
}

fn http_sink(dir: &Path, r: &Receiver, required: bool) -> String {
    let secret = dir.join("siem.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        r#"
[audit.siem]
type = "http"
url = "{}"
ca_cert = "{}"
secret_file = "{}"
required = {required}
batch = 2
"#,
        r.url,
        r.ca.display(),
        secret.display()
    )
}

async fn metric(c: &reqwest::Client, svc: &Service, name: &str) -> Option<f64> {
    let (_, text) = get(c, svc, "/metrics", None).await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_sink_that_is_down_and_a_restart_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = Receiver::start(d.path()).await;
    let s = setup("", &http_sink(d.path(), &r, false));
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let req = json!({"public_key": s.pubkey("alice")});
    let mut serials = Vec::new();
    for _ in 0..2 {
        let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
        assert_eq!(st, 200, "{b}");
        serials.push(b["serial"].as_str().unwrap().parse::<u64>().unwrap());
    }
    until("2 events at the receiver", || {
        (r.issued().len() == 2).then_some(())
    })
    .await;

    // Down: issuance goes on (the sink is not required), the events wait.
    r.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
        assert_eq!(st, 200, "{b}");
        serials.push(b["serial"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let mut backlog = 0.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        backlog = metric(&c, &svc, "sshca_audit_sink_backlog{sink=\"siem\"}")
            .await
            .unwrap_or(0.0);
        let up = metric(&c, &svc, "sshca_audit_sink_up{sink=\"siem\"}").await;
        if backlog >= 3.0 && up == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backlog, 3.0, "/metrics says how far behind the sink is");
    // The service restarts while the receiver is still down.
    svc.stop().await;
    let svc = Service::start(&s.config).await;
    let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    serials.push(b["serial"].as_str().unwrap().parse::<u64>().unwrap());
    r.down.store(false, Ordering::SeqCst);
    let got = until("6 events at the receiver", || {
        let e = r.issued();
        (e.len() >= 6).then_some(e)
    })
    .await;
    assert_eq!(got.len(), 6, "each event once");
    assert_eq!(
        got.iter()
            .map(|e| e["serial"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        serials,
        "in order"
    );
    assert_eq!(r.bad_signatures.load(Ordering::SeqCst), 0);
    let ids: std::collections::BTreeSet<String> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 6);
    until("the chain head at the receiver", || {
        r.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "chain_head" && e["seq"] == 6)
            .then_some(())
    })
    .await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_sink_that_is_down_stops_issuance() {
    let d = tempfile::tempdir().unwrap();
    let r = Receiver::start(d.path()).await;
    let s = setup("", &http_sink(d.path(), &r, true));
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let req = json!({"public_key": s.pubkey("alice")});
    let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    until("1 event at the receiver", || {
        (r.issued().len() == 1).then_some(())
    })
    .await;
    r.down.store(true, Ordering::SeqCst);
    // This one goes in; its delivery fails; then issuance stops.
    let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut st, mut b) = (0, Value::Null);
    while Instant::now() < deadline {
        let r = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
        (st, b) = (r.0, r.1);
        if st == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(st, 503, "{b}");
    assert_eq!(sshca_testkit::tls::code(&b), "audit_unavailable");
    assert!(sshca_testkit::tls::message(&b).contains("siem"), "{b}");
    r.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (st, b, _) = sign(&c, &svc, "ci", Some(&s.ci), &req).await;
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "issuance did not resume: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every issuance and the refusal reach the receiver.
    let got = until("the events at the receiver", || {
        let e = r.issued();
        (e.iter().filter(|e| e["type"] == "issue").count() == 3
            && e.iter().any(|e| e["code"] == "audit_unavailable"))
        .then_some(e)
    })
    .await;
    assert_eq!(r.bad_signatures.load(Ordering::SeqCst), 0);
    assert!(got.iter().all(|e| e["v"] == 1));
    svc.stop().await;
}
