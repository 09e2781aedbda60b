//! Invariants of policy merging over random policies and requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use proptest::prelude::*;
use sshca_core::policy::{Glob, OnDisallowed, Policy, Request};
use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::validity::Validity;
use sshca_core::{CertOptions, CertType, KeyData, OptionValue};

const NOW: u64 = 1_795_000_000;
const NAMES: [&str; 6] = ["alice", "bob", "deploy-1", "deploy-2", "root", "ci-x"];
const EXTS: [&str; 4] = [
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-user-rc",
];

fn subject() -> KeyData {
    KeyData::Ed25519(Ed25519PublicKey([1u8; 32]))
}

fn opts(names: &[&str]) -> CertOptions {
    names
        .iter()
        .map(|n| (n.to_string(), OptionValue::Flag))
        .collect()
}

prop_compose! {
    fn policy()(
        forced_p in proptest::option::of(proptest::sample::subsequence(NAMES.to_vec(), 1..3)),
        allowed in proptest::option::of(proptest::sample::subsequence(vec!["alice", "deploy-*", "bob"], 1..3)),
        default_p_idx in proptest::sample::subsequence(vec![0usize, 1], 0..2),
        all_principals in any::<bool>(),
        forced_ext in proptest::sample::subsequence(EXTS.to_vec(), 0..2),
        default_ext in proptest::sample::subsequence(EXTS.to_vec(), 0..3),
        allowed_ext in proptest::option::of(proptest::sample::subsequence(EXTS.to_vec(), 0..4)),
        force_cmd in any::<bool>(),
        ttl in 60u64..7200,
        extra in 0u64..86_400,
        drop in any::<bool>(),
    ) -> Policy {
        let mut p = Policy::new("p", CertType::User);
        p.valid_principals = forced_p.map(|v| v.iter().map(|s| s.to_string()).collect());
        p.allowed_valid_principals = allowed.map(|v| v.iter().map(|g| Glob::new(g).unwrap()).collect());
        // Defaults must lie within the allowed set for the policy to be valid.
        let candidates = ["alice", "deploy-1"];
        p.default_valid_principals = default_p_idx.iter().map(|i| candidates[*i].to_string())
            .filter(|d| p.allowed_valid_principals.as_ref().is_none_or(|a| a.iter().any(|g| g.matches(d))))
            .collect();
        p.all_principals = all_principals;
        p.extensions = opts(&forced_ext);
        p.allowed_extensions = allowed_ext.map(|v| v.iter().map(|s| s.to_string()).collect());
        p.default_extensions = opts(&default_ext.iter().copied()
            .filter(|e| p.allowed_extensions.as_ref().is_none_or(|a| a.iter().any(|x| x == e)))
            .collect::<Vec<_>>());
        if force_cmd {
            p.critical_options.insert("force-command".into(), OptionValue::Text("/bin/true".into()));
        }
        p.ttl = ttl;
        p.max_ttl = ttl + extra;
        p.on_disallowed = if drop { OnDisallowed::Drop } else { OnDisallowed::Reject };
        p
    }
}

prop_compose! {
    fn request()(
        principals in proptest::option::of(proptest::sample::subsequence(NAMES.to_vec(), 0..4)),
        ext in proptest::option::of(proptest::sample::subsequence(EXTS.to_vec(), 0..4)),
        crit_cmd in proptest::option::of("[a-z/]{1,10}"),
        validity in proptest::option::of((0u64..1000, 1u64..200_000)),
        future_start in 0u64..2,
    ) -> Request {
        Request {
            requester: Some("ci-1".into()),
            requester_source: None,
            cert_type: None,
            principals: principals.map(|v| v.iter().map(|s| s.to_string()).collect()),
            critical_options: crit_cmd.map(|c| {
                let mut m = CertOptions::new();
                m.insert("force-command".into(), OptionValue::Text(c));
                m
            }),
            extensions: ext.map(|v| opts(&v)),
            // Half the time the start lies in the future (by up to ~400 days),
            // the way a max_ttl bypass would try it.
            validity: validity.map(|(back, len)| {
                let after = if future_start == 1 { NOW + back * 35_000 } else { NOW - back };
                Validity { valid_after: after, valid_before: after + len }
            }),
            key_id: None,
            serial: None,
            claims: Default::default(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn merge_invariants(p in policy(), r in request()) {
        prop_assert!(p.check().is_ok(), "{:?}", p.check());
        match p.merge(&r, &subject(), NOW, 7) {
            Ok((t, _changes)) => {
                // Principals: within the forced set, or the allowed set.
                if let Some(forced) = &p.valid_principals {
                    prop_assert_eq!(&t.principals, forced);
                } else if let Some(allowed) = &p.allowed_valid_principals {
                    for pr in &t.principals {
                        prop_assert!(allowed.iter().any(|g| g.matches(pr)), "{pr} outside allowed");
                    }
                }
                prop_assert!(!t.principals.is_empty() || p.all_principals);
                // Defaults exactly when nothing was requested (and nothing forced).
                if p.valid_principals.is_none() && r.principals.is_none() {
                    prop_assert_eq!(&t.principals, &p.default_valid_principals);
                }
                if r.extensions.is_none() {
                    let mut expected = p.default_extensions.clone();
                    expected.extend(p.extensions.clone());
                    prop_assert_eq!(&t.extensions, &expected);
                }
                // Forced values always present.
                for (k, v) in p.extensions.iter().chain(p.critical_options.iter()) {
                    let got = t.extensions.get(k).or_else(|| t.critical_options.get(k));
                    prop_assert_eq!(got, Some(v));
                }
                // Allowed extensions only (forced ones aside).
                if let Some(allowed) = &p.allowed_extensions {
                    for k in t.extensions.keys() {
                        prop_assert!(allowed.contains(k) || p.extensions.contains_key(k));
                    }
                }
                // Lifetime.
                prop_assert!(t.valid_before > t.valid_after);
                prop_assert!(t.valid_before <= NOW + p.max_ttl, "ends past now + max_ttl");
                prop_assert!(t.valid_after <= NOW + p.max_start, "starts past now + max_start");
                prop_assert!(t.valid_after >= NOW - p.backdate);
                prop_assert!(t.serial != 0);
            }
            Err(e) => {
                // Under `drop`, only an empty principal set or an empty
                // interval may refuse the request.
                if p.on_disallowed == OnDisallowed::Drop {
                    let s = e.to_string();
                    prop_assert!(
                        s.contains("no principals") || s.contains("empty validity") || s.contains("ends before now"),
                        "{s}"
                    );
                }
            }
        }
    }

    #[test]
    fn reject_issues_nothing_disallowed(p in policy(), r in request()) {
        let mut p = p;
        p.on_disallowed = OnDisallowed::Reject;
        if let (Some(allowed), None, Some(req)) = (&p.allowed_valid_principals, &p.valid_principals, &r.principals) {
            let bad = req.iter().find(|x| !allowed.iter().any(|g| g.matches(x)));
            if let Some(bad) = bad {
                let e = p.merge(&r, &subject(), NOW, 7).unwrap_err().to_string();
                prop_assert!(e.contains(&format!("principal `{bad}` is not allowed")), "{e}");
            }
        }
    }
}

#[test]
fn table_of_fields() {
    let s = subject();
    let mut p = Policy::new("dev", CertType::User);
    p.default_valid_principals = vec!["alice".into()];
    p.allowed_valid_principals = Some(vec![
        Glob::new("alice").unwrap(),
        Glob::new("deploy-*").unwrap(),
    ]);
    p.key_id = Some("{requester}:{policy}:{principals}:{serial}".into());
    p.requesters = Some(vec![
        sshca_core::matcher::IdentityMatcher::parse("ci-*").unwrap()
    ]);
    p.critical_options.insert(
        "force-command".into(),
        OptionValue::Text("/usr/bin/true".into()),
    );
    // defaults
    let r = Request {
        requester: Some("ci-7".into()),
        requester_source: None,
        ..Default::default()
    };
    let (t, changes) = p.merge(&r, &s, NOW, 42).unwrap();
    assert_eq!(t.principals, ["alice"]);
    assert_eq!(t.key_id, "ci-7:dev:alice:42");
    assert_eq!(t.valid_before - t.valid_after, 86_400 + 300);
    assert_eq!(
        t.critical_options["force-command"],
        OptionValue::Text("/usr/bin/true".into())
    );
    assert!(changes.iter().any(|c| c.field == "principals"));
    // requester
    let e = p
        .merge(
            &Request {
                requester: Some("mallory".into()),
                requester_source: None,
                ..Default::default()
            },
            &s,
            NOW,
            1,
        )
        .unwrap_err();
    assert!(e
        .to_string()
        .contains("requester `local:mallory` is not allowed"));
    let e = p.merge(&Request::default(), &s, NOW, 1).unwrap_err();
    assert!(e.to_string().contains("requester identity is required"));
    // type
    let r = Request {
        requester: Some("ci-1".into()),
        requester_source: None,
        cert_type: Some(CertType::Host),
        ..Default::default()
    };
    assert!(p
        .merge(&r, &s, NOW, 1)
        .unwrap_err()
        .to_string()
        .contains("issues user certificates"));
    // ttl > max_ttl rejected, clamped under drop
    let r = Request {
        requester: Some("ci-1".into()),
        requester_source: None,
        validity: Some(Validity {
            valid_after: NOW,
            valid_before: NOW + 10 * 86_400,
        }),
        ..Default::default()
    };
    assert!(p
        .merge(&r, &s, NOW, 1)
        .unwrap_err()
        .to_string()
        .contains("max_ttl allows"));
    let mut pd = p.clone();
    pd.on_disallowed = OnDisallowed::Drop;
    let (t, ch) = pd.merge(&r, &s, NOW, 1).unwrap();
    assert_eq!(t.valid_before, NOW + 86_400);
    assert!(ch.iter().any(|c| c.field == "valid_before"));
    // key types
    let mut pk = p.clone();
    pk.allowed_key_types = Some(vec!["ecdsa-sha2-nistp256".into()]);
    let r = Request {
        requester: Some("ci-1".into()),
        requester_source: None,
        ..Default::default()
    };
    assert!(pk
        .merge(&r, &s, NOW, 1)
        .unwrap_err()
        .to_string()
        .contains("ssh-ed25519 is not allowed"));
    // empty principals never by accident
    let mut pe = Policy::new("e", CertType::Host);
    assert!(pe
        .merge(&Request::default(), &s, NOW, 1)
        .unwrap_err()
        .to_string()
        .contains("no principals"));
    pe.all_principals = true;
    assert!(pe
        .merge(&Request::default(), &s, NOW, 1)
        .unwrap()
        .0
        .principals
        .is_empty());
}

#[test]
fn check_names_the_field() {
    let mut p = Policy::new("x", CertType::User);
    p.ttl = 100;
    p.max_ttl = 50;
    assert!(p.check().unwrap_err().to_string().contains("field `ttl`"));
    let mut p = Policy::new("x", CertType::User);
    p.allowed_valid_principals = Some(vec![Glob::new("a*").unwrap()]);
    p.default_valid_principals = vec!["bob".into()];
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("default_valid_principals"));
    let mut p = Policy::new("x", CertType::User);
    p.critical_options
        .insert("force-command".into(), OptionValue::Text(String::new()));
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("force-command is empty"));
    let mut p = Policy::new("x", CertType::User);
    p.critical_options.insert(
        "source-address".into(),
        OptionValue::Text("10.0.0.0/99".into()),
    );
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("invalid prefix length"));
    let mut p = Policy::new("x", CertType::User);
    p.allowed_extensions = Some(vec!["permit-pty".into()]);
    p.default_extensions
        .insert("permit-X11-forwarding".into(), OptionValue::Flag);
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("default_extensions"));
}
