//! `sshca renew` against `sshca serve`: nothing to do while enough of the
//! lifetime is left; otherwise a proof by the key (file keys, user and
//! host certificates), the new certificate written over KEY-cert.pub, and
//! sshd accepting it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use common::*;
use serve_support::*;

#[test]
fn renew_user_and_host_certificates() {
    let s = setup("", None);
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&format!(
        r#"
[policy.people]
ca = "users"
requesters = ["ci"]
valid_principals = ["{me}"]
ttl = "1h"
renewable = true
renew_max_age = "7d"

[policy.hosts]
ca = "users"
cert_type = "host"
requesters = ["ci"]
allowed_valid_principals = ["127.0.0.1"]
ttl = "1h"
renewable = true
renew_max_age = "30d"
"#,
        me = user()
    ));
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.dir, &s.config);
    let key = keygen(&s.dir, "id_user", "ed25519", None);
    let host = keygen(&s.dir, "enrolled_host_key", "ecdsa", None);
    let request = |policy: &str, k: &std::path::Path, extra: &[&str]| {
        run(sshca()
            .args(["request", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca)
            .args(["--policy", policy])
            .args(extra)
            .arg(k.with_extension("pub"))
            .env("SSHCA_TOKEN", &s.ci));
    };
    request("people", &key, &[]);
    request("hosts", &host, &["-h", "-n", "127.0.0.1"]);
    let cert = cert_of(&key.with_extension("pub"));
    let before = std::fs::read_to_string(&cert).unwrap();

    let renew = |extra: &[&str], keys: &[&std::path::Path]| {
        sshca()
            .args(["renew", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca)
            .args(extra)
            .args(keys)
            .output()
            .unwrap()
    };
    // A fresh certificate: nothing to do (the default is a third of the
    // lifetime).
    let out = renew(&[], &[&key]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), before);

    // Within the window: renewed, user and host alike.
    let out = renew(&["--within", "100%"], &[&key, &host]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(&cert).unwrap();
    assert_ne!(after, before);
    std::fs::write(s.dir.join("before-cert.pub"), &before).unwrap();
    let (old, new) = (
        sshca_view(&s.dir.join("before-cert.pub")),
        sshca_view(&cert),
    );
    assert_eq!(old.principals, new.principals);
    assert_eq!(old.key_id, new.key_id);
    assert_ne!(old.serial, new.serial);
    let host_view = sshca_view(&cert_of(&host.with_extension("pub")));
    assert!(
        host_view.cert_type.contains("host"),
        "{}",
        host_view.cert_type
    );
    assert_eq!(temp_leftovers(&s.dir), 0);

    // sshd takes the renewed certificate.
    let (sshd, known_hosts) = sshd_trusting(&s.dir, &s.user_ca.with_extension("pub"));
    assert_login_works(&sshd, &s.dir, &key, &cert, &known_hosts, "renewed");

    // A certificate for another key is not sent.
    let other = keygen(&s.dir, "id_other", "ed25519", None);
    std::fs::copy(&cert, cert_of(&other.with_extension("pub"))).unwrap();
    let out = renew(&["--within", "100%"], &[&other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another key"));
}
