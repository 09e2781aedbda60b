//! Requests that used to get certificates they should not: each case here
//! was issued before the policy merge was hardened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sshca_core::policy::{Glob, OnDisallowed, Policy, Request};
use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::validity::{parse_validity, Validity};
use sshca_core::{CertType, KeyData};

const NOW: u64 = 1_795_000_000;
const H: u64 = 3600;
const D: u64 = 86_400;

fn subject() -> KeyData {
    KeyData::Ed25519(Ed25519PublicKey([7u8; 32]))
}

fn user_policy() -> Policy {
    let mut p = Policy::new("dev", CertType::User);
    p.ttl = H;
    p.max_ttl = 8 * H;
    p.allowed_valid_principals = Some(vec![Glob::new("alice").unwrap()]);
    p
}

fn req(principals: &[&str]) -> Request {
    Request {
        requester: Some("alice".into()),
        principals: Some(principals.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn refused(p: &Policy, r: &Request) -> String {
    match p.merge(r, &subject(), NOW, 99) {
        Ok((t, _)) => panic!(
            "issued {}..{} serial {} for {:?}",
            t.valid_after, t.valid_before, t.serial, t.principals
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_later_start_does_not_extend_max_ttl() {
    let p = user_policy();
    // `-V +365d:+365d7h`: 7 hours long, but ending a year from now.
    let mut r = req(&["alice"]);
    r.validity = Some(parse_validity("+365d:+365d7h", NOW).unwrap());
    let e = refused(&p, &r);
    assert!(e.contains("max_start") || e.contains("max_ttl"), "{e}");
    // Even with pre-dating allowed, the end stays within now + max_ttl.
    let mut pf = p.clone();
    pf.max_start = 400 * D;
    let e = refused(&pf, &r);
    assert!(e.contains("max_ttl allows 28800s"), "{e}");
    // Under drop both ends are pulled back and the change is reported.
    let mut pd = p.clone();
    pd.on_disallowed = OnDisallowed::Drop;
    let (t, changes) = pd.merge(&r, &subject(), NOW, 99).unwrap();
    assert_eq!((t.valid_after, t.valid_before), (NOW, NOW + 8 * H));
    assert!(changes.iter().any(|c| c.field == "valid_after"));
    assert!(changes.iter().any(|c| c.field == "valid_before"));
}

#[test]
fn max_start_bounds_pre_dated_certificates() {
    let mut p = user_policy();
    let mut r = req(&["alice"]);
    r.validity = Some(Validity {
        valid_after: NOW + 2 * H,
        valid_before: NOW + 6 * H,
    });
    // Default max_start 0: no start in the future.
    assert!(refused(&p, &r).contains("starts 7200s after now"));
    p.max_start = 3 * H;
    let (t, _) = p.merge(&r, &subject(), NOW, 99).unwrap();
    assert_eq!((t.valid_after, t.valid_before), (NOW + 2 * H, NOW + 6 * H));
    // The end is still counted from now, not from the start.
    r.validity = Some(Validity {
        valid_after: NOW + 2 * H,
        valid_before: NOW + 9 * H,
    });
    assert!(refused(&p, &r).contains("max_ttl"));
    // Forever is never within max_ttl.
    r.validity = Some(parse_validity("always:forever", NOW).unwrap());
    p.backdate = u64::MAX;
    assert!(refused(&p, &r).contains("ends never"));
}

#[test]
fn requested_principals_may_not_be_patterns() {
    let mut p = Policy::new("hosts", CertType::Host);
    p.allowed_valid_principals = Some(vec![Glob::new("db?.example.com").unwrap()]);
    let mut r = req(&["db*.example.com"]);
    r.cert_type = Some(CertType::Host);
    let e = refused(&p, &r);
    assert!(
        e.contains("`db*.example.com`") && e.contains("pattern"),
        "{e}"
    );
    for bad in ["db?.example.com", "!db1.example.com", "db1.example.com,db2"] {
        r.principals = Some(vec![bad.into()]);
        assert!(refused(&p, &r).contains("pattern"), "{bad}");
    }
    // Not even under drop.
    p.on_disallowed = OnDisallowed::Drop;
    r.principals = Some(vec!["db*.example.com".into()]);
    assert!(refused(&p, &r).contains("pattern"));
    // A plain name the glob allows is fine.
    r.principals = Some(vec!["db1.example.com".into()]);
    assert_eq!(
        p.merge(&r, &subject(), NOW, 99).unwrap().0.principals,
        ["db1.example.com"]
    );
    // The policy's own forced principals may be patterns.
    p.valid_principals = Some(vec!["*.example.com".into()]);
    r.principals = Some(vec!["*.example.com".into()]);
    assert_eq!(
        p.merge(&r, &subject(), NOW, 99).unwrap().0.principals,
        ["*.example.com"]
    );
}

#[test]
fn serials_are_not_the_requesters_choice() {
    let mut p = user_policy();
    let mut r = req(&["alice"]);
    r.serial = Some(5);
    assert!(refused(&p, &r).contains("requested serial (-z) is not allowed"));
    p.allow_serial = true;
    assert_eq!(p.merge(&r, &subject(), NOW, 99).unwrap().0.serial, 5);
    // 0 is never issued under a policy, requested or not.
    r.serial = Some(0);
    assert!(refused(&p, &r).contains("serial 0"));
    r.serial = None;
    let e = p.merge(&r, &subject(), NOW, 0).unwrap_err().to_string();
    assert!(e.contains("serial 0"), "{e}");
}

#[test]
fn control_characters_are_refused_by_field() {
    let mut p = user_policy();
    p.allowed_valid_principals = None;
    let mut r = req(&["alice\nroot"]);
    let e = refused(&p, &r);
    assert!(
        e.contains("principal `alice\\nroot`") && !e.contains('\n'),
        "{e}"
    );
    r = req(&["alice"]);
    r.key_id = Some("alice\x1b[2J".into());
    let e = refused(&p, &r);
    assert!(
        e.contains("key_id") && e.contains("\\x1b") && !e.contains('\x1b'),
        "{e}"
    );
    r.key_id = None;
    r.requester = Some("ci\0admin".into());
    let e = refused(&p, &r);
    assert!(e.contains("requester") && e.contains("\\x00"), "{e}");
    // A key id template cannot smuggle one in either.
    p.key_id = Some("{requester}".into());
    r.requester = Some("ci\u{85}".into());
    assert!(refused(&p, &r).contains("requester"));
    // The policy's own principals are checked when it is loaded.
    let mut pc = user_policy();
    pc.valid_principals = Some(vec!["a\tb".into()]);
    assert!(pc
        .check()
        .unwrap_err()
        .to_string()
        .contains("valid_principals"));
}
