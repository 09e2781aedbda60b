//! The authority against a real SQLite store and a file CA key: issuing
//! records before it returns and draws a new serial when the CA already
//! used one; every refusal has its kind; revocations and the KRL cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use sshca::config::Config;
use sshca::core::policy::Request;
use sshca::core::KeyData;
use sshca_authority::issue::{prepare, sign_and_record, RecordAs, Signing};
use sshca_authority::{
    Authority, AuthorityOptions, BundleFormat, Identity, IssueRequest, NoObserver, RefusalKind,
    Revoker,
};
use sshca_store::{CertQuery, IssuedCert, RevocationTarget};
use sshca_testkit::cli::keygen;

struct Env {
    _d: tempfile::TempDir,
    authority: Authority,
    subject: KeyData,
}

async fn env() -> Env {
    let d = tempfile::tempdir().unwrap();
    let ca = keygen(d.path(), "ca", "ed25519", None);
    let id = keygen(d.path(), "id", "ed25519", None);
    let config = Config::parse(
        &format!(
            r#"[oidc.corp]
issuer = "https://idp.example"

[ca.users]
key = "file:{}"

[policy.ci]
ca = "users"
requesters = ["ci", "alice"]
allowed_valid_principals = ["deploy", "alice"]
default_valid_principals = ["deploy"]
key_id = "{{requester}}"

[policy.sso]
ca = "users"
auth = ["oidc:corp"]
valid_principals = ["{{claims.login}}"]

[policy.root]
ca = "users"
requesters = ["ci"]
valid_principals = ["root"]
approval = {{ approvers = ["ops*"], expires = "1h" }}
"#,
            ca.display()
        ),
        &d.path().join("sshca.toml"),
    )
    .unwrap();
    let store = sshca_store::open(
        &format!("sqlite:{}", d.path().join("sshca.db").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let authority = Authority::open(config, store, AuthorityOptions::default())
        .await
        .unwrap();
    let subject = sshca::read_subject_key(&id.with_extension("pub"))
        .unwrap()
        .0;
    Env {
        _d: d,
        authority,
        subject,
    }
}

fn request(principals: Option<&[&str]>) -> Request {
    Request {
        requester: Some("mallory".into()),
        requester_source: None,
        cert_type: None,
        principals: principals.map(|p| p.iter().map(|s| s.to_string()).collect()),
        critical_options: None,
        extensions: None,
        validity: None,
        key_id: None,
        serial: None,
        claims: Default::default(),
    }
}

#[tokio::test]
async fn issues_only_once_recorded_and_draws_again_on_a_taken_serial() {
    let e = env().await;
    let a = &e.authority;
    let ci = Identity::new("token", "ci");
    let now = sshca_authority::unix_now();
    let issued = a
        .issue(
            IssueRequest {
                policy: "ci",
                identity: &ci,
                subject: &e.subject,
                request: request(Some(&["alice"])),
                request_id: "r1",
                source_address: None,
            },
            now,
        )
        .await
        .unwrap();
    // The requester is the identity's, whatever the request said.
    assert_eq!(issued.certificate.key_id(), "ci");
    assert_eq!(issued.row.requester, "ci");
    assert_eq!(issued.row.requester_source.as_deref(), Some("token"));
    assert_eq!(issued.certificate.principals(), ["alice".to_string()]);
    let stored = a
        .store()
        .certs(&CertQuery {
            serial: Some(issued.row.serial),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored, vec![issued.row.clone()]);

    // A serial the store already holds for the CA: signed again with
    // another one, and only that one recorded.
    let ca = &a.cas()["users"];
    let entry = &a.config().policies["ci"];
    let taken = 4242;
    a.store()
        .record(&IssuedCert {
            serial: taken,
            certificate: "held".into(),
            ..issued.row.clone()
        })
        .await
        .unwrap();
    let prepared = prepare(entry, &ci, &e.subject, request(None), now, taken).unwrap();
    assert_eq!(prepared.template.serial, taken);
    let signing = Signing {
        ca_name: "users",
        signer: &*ca.signer,
        ca_fingerprint: &ca.current.fingerprint,
        alg: None,
        store: Some(&**a.store()),
        bounds: None,
        observer: &NoObserver,
    };
    let ci = sshca_authority::Identity::new("token", "ci");
    let who = RecordAs {
        identity: &ci,
        kind: "issue",
        policy: "ci",
        now,
        request_id: "r2",
        renewal: None,
    };
    let again = sign_and_record(&signing, prepared, &e.subject, &who)
        .await
        .unwrap();
    assert_ne!(again.certificate.serial(), taken);
    assert_eq!(again.row.serial, again.certificate.serial());
    let held = a
        .store()
        .certs(&CertQuery {
            serial: Some(taken),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].certificate, "held");

    // Without a store (the offline command line): signed, nothing recorded.
    let before = a.store().certs(&CertQuery::default()).await.unwrap().len();
    let offline = Signing {
        store: None,
        ..signing
    };
    let prepared = prepare(entry, &ci, &e.subject, request(None), now, 7).unwrap();
    let local = sign_and_record(&offline, prepared, &e.subject, &who)
        .await
        .unwrap();
    assert_eq!(local.certificate.serial(), 7);
    assert_eq!(
        a.store().certs(&CertQuery::default()).await.unwrap().len(),
        before
    );
}

#[tokio::test]
async fn refusals_have_their_kind() {
    let e = env().await;
    let a = &e.authority;
    let now = sshca_authority::unix_now();
    let ask =
        |policy: &'static str, identity: Identity, principals: Option<&'static [&'static str]>| {
            let subject = e.subject.clone();
            async move {
                a.issue(
                    IssueRequest {
                        policy,
                        identity: &identity,
                        subject: &subject,
                        request: request(principals),
                        request_id: "r",
                        source_address: None,
                    },
                    now,
                )
                .await
                .map(|_| ())
                .map_err(|r| (r.kind, r.message))
            }
        };
    let (kind, msg) = ask("nope", Identity::new("token", "ci"), None)
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::NotFound, "{msg}");
    let (kind, msg) = ask("ci", Identity::new("token", "bob"), None)
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::Forbidden);
    assert!(msg.contains("`token:bob`"), "{msg}");
    // The same name from an OIDC issuer is another identity: a bare
    // requester pattern never matches it.
    let (kind, msg) = ask("ci", Identity::new("oidc:corp", "ci"), None)
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::Forbidden);
    assert!(msg.contains("`oidc:corp:ci`"), "{msg}");
    // The policy admits OIDC identities of `corp` only.
    let (kind, msg) = ask("sso", Identity::new("token", "alice"), None)
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::Forbidden);
    assert!(msg.contains("oidc:corp"), "{msg}");
    let (kind, msg) = ask("ci", Identity::new("token", "ci"), Some(&["root"]))
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::PolicyRefused);
    assert!(
        msg.contains("root") && !msg.starts_with("invalid template"),
        "{msg}"
    );
    // A claim the identity does not carry: refused, naming it.
    let (kind, msg) = ask("sso", Identity::new("oidc:corp", "alice"), None)
        .await
        .unwrap_err();
    assert_eq!(kind, RefusalKind::PolicyRefused);
    assert!(msg.contains("login"), "{msg}");
    assert!(a
        .store()
        .certs(&CertQuery::default())
        .await
        .unwrap()
        .is_empty());
    // The command line's errors keep the kind.
    let e: sshca::signer::Error =
        sshca_authority::Refusal::new(RefusalKind::PolicyRefused, "no").into();
    assert_eq!(e.kind(), sshca::signer::ErrorKind::Policy);
}

#[tokio::test]
async fn revocations_and_the_krl_cache() {
    let e = env().await;
    let a = &e.authority;
    let now = sshca_authority::unix_now();
    let by = Revoker {
        identity: "admin".into(),
        source: "token".into(),
        request_id: "r".into(),
    };
    let first = a.current_krl(None, now).await.unwrap();
    assert!(Arc::ptr_eq(
        &first,
        &a.current_krl(Some("users"), now).await.unwrap()
    ));
    // Rebuilt once an hour even when nothing changed.
    let later = a
        .current_krl(None, now + sshca_authority::KRL_MAX_AGE)
        .await
        .unwrap();
    assert!(later.version > first.version);

    let stranger = sshca_authority::revoke::ca_key_target(&e.subject).unwrap();
    let r = a.revoke("users", stranger, "", &by, now).await.unwrap_err();
    assert_eq!(r.kind, RefusalKind::NotACaKey);
    let r = a
        .revoke(
            "nope",
            RevocationTarget::Serials { from: 1, to: 1 },
            "",
            &by,
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::NotFound);
    let r = a
        .revoke(
            "users",
            RevocationTarget::Serials { from: 1, to: 1 },
            "a\nb",
            &by,
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::InvalidInput);
    let rec = a
        .revoke(
            "users",
            RevocationTarget::Serials { from: 5, to: 9 },
            "lost",
            &by,
            now,
        )
        .await
        .unwrap();
    assert_eq!(rec.revoked_by, "admin");
    let after = a
        .current_krl(None, now + sshca_authority::KRL_MAX_AGE)
        .await
        .unwrap();
    assert!(after.version > later.version);
    assert_eq!(after.revocations, 1);
    let audit = a.store().audit_events(10).await.unwrap();
    assert!(audit.iter().any(|r| r.code == "revoked"
        && r.reason.contains("serials 5-9")
        && r.reason.contains("lost")));

    // The trust bundle names the CA and the key's role.
    let bundle = a
        .trust_bundle("users", &BundleFormat::AuthorizedKeys, now)
        .await
        .unwrap();
    assert!(
        bundle.starts_with("cert-authority ssh-ed25519 "),
        "{bundle}"
    );
    assert!(bundle.contains("sshca CA users (current)"), "{bundle}");
    let r = a
        .trust_bundle("nope", &BundleFormat::TrustedUserCaKeys, now)
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::NotFound);

    // Listing: one's own, or all for an admin.
    let r = a
        .certs(
            &Identity::new("token", "ci"),
            false,
            CertQuery {
                requester: Some("alice".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::Forbidden);
}

#[tokio::test]
async fn a_request_stuck_while_signing_is_recovered_from_the_store() {
    let e = env().await;
    let ci = Identity::new("token", "ci");
    let ops = Identity::new("token", "ops1");
    let ask = |id: &'static str| IssueRequest {
        policy: "root",
        identity: &ci,
        subject: &e.subject,
        request: request(None),
        request_id: id,
        source_address: None,
    };
    // Issuing directly is refused; asking keeps a pending request.
    let r = e.authority.issue(ask("r0"), 1_000).await.unwrap_err();
    assert_eq!(r.kind, RefusalKind::ApprovalRequired);
    let store = e.authority.store().clone();
    let mut pending = Vec::new();
    for id in ["r1", "r2"] {
        match e.authority.request(ask(id), 1_000).await.unwrap() {
            sshca_authority::Requested::Pending(a) => pending.push(*a),
            other => panic!("{other:?}"),
        }
    }
    // r1's replica signed and recorded, then stopped before saying so;
    // r2's stopped before signing. Both are stuck in `issuing`.
    let done = e
        .authority
        .approve(&pending[0].id, &ops, "a1", 1_010)
        .await
        .unwrap();
    assert_eq!(done.state, "approved");
    let cert = done.certificate.clone().unwrap();
    for (a, serial) in [(&pending[0], done.serial), (&pending[1], Some(7))] {
        let mut stuck = store.approval(&a.id).await.unwrap().unwrap();
        stuck.state = "issuing".into();
        stuck.certificate = None;
        stuck.serial = serial;
        stuck.decided_at = Some(1_020);
        assert!(store.update_approval(&stuck).await.unwrap());
    }
    // Within 5 minutes it is still being signed.
    let r = e
        .authority
        .approve(&pending[1].id, &ops, "a2", 1_100)
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::ApprovalDecided);
    // Later, r1 is found approved with its recorded certificate, not signed twice.
    let got = e
        .authority
        .approval(&pending[0].id, &ci, 2_000)
        .await
        .unwrap();
    assert_eq!(
        (got.state.as_str(), got.certificate.as_deref()),
        ("approved", Some(cert.as_str()))
    );
    let r = e
        .authority
        .approve(&pending[0].id, &ops, "a3", 2_000)
        .await
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::ApprovalDecided);
    // r2 is open again and approving it issues.
    let got = e
        .authority
        .approve(&pending[1].id, &ops, "a4", 2_000)
        .await
        .unwrap();
    assert_eq!(got.state, "approved");
    let rows = store
        .certs(&CertQuery {
            requester: Some("ci".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.iter().filter(|c| c.policy == "root").count(), 2);
}
