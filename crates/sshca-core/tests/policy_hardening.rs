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
        requester_source: None,
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

/// A policy whose defaults restrict: a forced command and a source address
/// by default, `permit-pty` by default; no allowed lists, no key id.
fn restricted() -> Policy {
    use sshca_core::{CertOptions, OptionValue};
    let mut p = user_policy();
    let mut crit = CertOptions::new();
    crit.insert(
        "force-command".into(),
        OptionValue::Text("/usr/bin/true".into()),
    );
    crit.insert(
        "source-address".into(),
        OptionValue::Text("10.0.0.0/8".into()),
    );
    p.default_critical_options = crit;
    let mut ext = CertOptions::new();
    ext.insert("permit-pty".into(), OptionValue::Flag);
    p.default_extensions = ext;
    p
}

#[test]
fn an_empty_options_map_is_the_defaults() {
    use sshca_core::CertOptions;
    let p = restricted();
    let mut r = req(&["alice"]);
    r.critical_options = Some(CertOptions::new());
    r.extensions = Some(CertOptions::new());
    let (t, _) = p.merge(&r, &subject(), NOW, 99).unwrap();
    assert!(t.critical_options.contains_key("force-command"));
    assert!(t.critical_options.contains_key("source-address"));
    assert!(t.extensions.contains_key("permit-pty"));
}

#[test]
fn without_allowed_lists_only_the_default_names_may_be_asked_for() {
    use sshca_core::{CertOptions, OptionValue};
    let p = restricted();
    // The FIDO touch requirement cannot be dropped by asking for it.
    let mut r = req(&["alice"]);
    let mut ext = CertOptions::new();
    ext.insert("no-touch-required".into(), OptionValue::Flag);
    r.extensions = Some(ext);
    let e = refused(&p, &r);
    assert!(
        e.contains("extension `no-touch-required` is not allowed (allowed: permit-pty)"),
        "{e}"
    );
    // A default restriction cannot be loosened: `source-address` stays the
    // policy's (repeating it is fine).
    let mut r = req(&["alice"]);
    let mut crit = CertOptions::new();
    crit.insert(
        "source-address".into(),
        OptionValue::Text("0.0.0.0/0".into()),
    );
    r.critical_options = Some(crit);
    let e = refused(&p, &r);
    assert!(
        e.contains("`source-address` may only have the policy's default"),
        "{e}"
    );
    let mut crit = CertOptions::new();
    crit.insert(
        "source-address".into(),
        OptionValue::Text("10.0.0.0/8".into()),
    );
    r.critical_options = Some(crit);
    let (t, _) = p.merge(&r, &subject(), NOW, 99).unwrap();
    assert_eq!(
        t.critical_options.get("source-address"),
        Some(&OptionValue::Text("10.0.0.0/8".into()))
    );
    // Asking for one default does not shed the others.
    assert!(t.critical_options.contains_key("force-command"));
    // Nor swapped for another option.
    let mut r = req(&["alice"]);
    let mut crit = CertOptions::new();
    crit.insert("verify-required".into(), OptionValue::Flag);
    r.critical_options = Some(crit);
    let e = refused(&p, &r);
    assert!(
        e.contains("critical option `verify-required` is not allowed"),
        "{e}"
    );
    // `*` allows any name again.
    let mut any = p.clone();
    any.allowed_extensions = Some(vec!["*".into()]);
    let mut r = req(&["alice"]);
    let mut ext = CertOptions::new();
    ext.insert("permit-agent-forwarding".into(), OptionValue::Flag);
    r.extensions = Some(ext);
    let (t, _) = any.merge(&r, &subject(), NOW, 99).unwrap();
    assert!(t.extensions.contains_key("permit-agent-forwarding"));
}

#[test]
fn the_key_id_is_the_policys_unless_it_allows_one() {
    let p = restricted();
    let (t, _) = p.merge(&req(&["alice"]), &subject(), NOW, 4242).unwrap();
    assert_eq!(t.key_id, "alice-4242");
    let mut r = req(&["alice"]);
    r.key_id = Some("ops-admin@corp".into());
    let e = refused(&p, &r);
    assert!(
        e.contains("requested key id (`ops-admin@corp`) is not allowed"),
        "{e}"
    );
    let mut allowing = p.clone();
    allowing.allow_key_id = true;
    let (t, _) = allowing.merge(&r, &subject(), NOW, 4242).unwrap();
    assert_eq!(t.key_id, "ops-admin@corp");
    // Without a requester: the policy's name.
    let mut anon = req(&["alice"]);
    anon.requester = None;
    let (t, _) = p.merge(&anon, &subject(), NOW, 7).unwrap();
    assert_eq!(t.key_id, "dev-7");
}

#[test]
fn requesters_are_matched_with_their_source() {
    use sshca_core::matcher::IdentityMatcher;
    let mut p = user_policy();
    p.requesters = Some(vec![IdentityMatcher::parse("ci-*").unwrap()]);
    let mut r = req(&["alice"]);
    r.requester = Some("ci-evil/x".into());
    r.requester_source = Some("oidc:github".into());
    let e = refused(&p, &r);
    assert!(
        e.contains("requester `oidc:github:ci-evil/x` is not allowed"),
        "{e}"
    );
    r.requester_source = Some("token".into());
    assert!(p.merge(&r, &subject(), NOW, 99).is_ok());
}

#[test]
fn names_refuse_whitespace_and_format_characters() {
    let p = user_policy();
    for bad in ["ali ce", "alice\u{202e}", "al\u{200b}ice"] {
        let e = refused(&p, &req(&[bad]));
        assert!(e.contains("principal"), "{bad:?}: {e}");
    }
}
