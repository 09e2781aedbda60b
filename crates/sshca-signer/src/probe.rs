//! Checks safe to run against a production key (`sshca conformance URI`):
//! what the conformance suite asserts, as results instead of panics, with
//! a known number of signatures and nothing written to the key or its
//! service.
//!
//! Each signature is a request to the key's service (billed and audited by
//! a KMS): [`planned_signatures`] says how many a run makes.

use std::collections::HashSet;
use std::sync::Arc;

use sshca_core::{CertTemplate, CertType, Certificate, KeyData, OptionValue, SigAlg};

use crate::{verify_signature, KeySigner, SignerExt};

/// One check: its name, whether it passed, and what was seen (the reason
/// when it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`sign rsa-sha2-512`, `concurrent signing (4)`, …).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, or why it failed.
    pub detail: String,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// How a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Certificates signed at once in the concurrency check.
    pub concurrency: usize,
    /// Principals in the many-principals certificate.
    pub principals: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            principals: 200,
        }
    }
}

/// The signatures a probe of a key with `algorithms` signature algorithms
/// asks for: one message and one certificate per algorithm, the concurrent
/// certificates, and the many-principals certificate.
pub fn planned_signatures(algorithms: usize, o: &ProbeOptions) -> usize {
    2 * algorithms + o.concurrency + 1
}

/// A further look at each certificate (the command line runs `ssh-keygen
/// -L`): `Err(reason)` fails the certificate's check.
pub type CertificateCheck =
    dyn Fn(&Certificate, SigAlg) -> std::result::Result<String, String> + Send + Sync;

/// The user-certificate template the probe signs.
fn template(serial: u64, principals: usize) -> CertTemplate {
    let mut t = CertTemplate::new(CertType::User, format!("sshca-conformance-{serial}"));
    t.principals = (0..principals.max(1))
        .map(|i| format!("conformance-{i}"))
        .collect();
    t.serial = serial;
    t.valid_after = 1_700_000_000;
    t.valid_before = 4_000_000_000;
    t.critical_options.insert(
        "force-command".into(),
        OptionValue::Text("/usr/bin/true".into()),
    );
    t.extensions.insert("permit-pty".into(), OptionValue::Flag);
    t
}

fn subject_key() -> KeyData {
    use sshca_core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
    KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
}

/// A signed certificate checked: through the strict decoder (and a
/// byte-identical re-encoding), through ssh-key, its fields and CA, its
/// signature, and `extra`.
fn check_certificate(
    cert: &Certificate,
    ca: &KeyData,
    t: &CertTemplate,
    alg: SigAlg,
    extra: Option<&CertificateCheck>,
) -> std::result::Result<String, String> {
    let text = cert
        .to_openssh()
        .map_err(|e| format!("cannot encode: {e}"))?;
    let ours = Certificate::from_openssh(&text).map_err(|e| format!("strict decoder: {e}"))?;
    if ours.to_openssh().map_err(|e| e.to_string())? != text {
        return Err("the certificate does not re-encode to the same bytes".into());
    }
    ours.verify_signature()
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    if ours.signature_key() != ca {
        return Err("the signature key is not the key's public key".into());
    }
    if ours.serial() != t.serial || ours.principals() != t.principals.as_slice() {
        return Err("the certificate does not carry the requested serial and principals".into());
    }
    let theirs = sshca_core::ssh_key::Certificate::from_openssh(&text)
        .map_err(|e| format!("ssh-key rejects it: {e}"))?;
    theirs
        .validate_at(
            2_000_000_000,
            [&ca.fingerprint(sshca_core::HashAlg::Sha256)],
        )
        .map_err(|e| format!("ssh-key does not validate it: {e}"))?;
    let mut detail = format!("{} bytes, decoded and verified", text.len());
    if let Some(extra) = extra {
        detail.push_str(", ");
        detail.push_str(&extra(cert, alg)?);
    }
    Ok(detail)
}

/// Runs the checks against an opened signer: every algorithm signs a
/// message that verifies (and not another one) and a certificate that
/// decodes and verifies; `concurrency` certificates at once; one
/// certificate with `principals` principals. The key is only asked to sign.
pub async fn probe(
    signer: Arc<dyn KeySigner>,
    o: &ProbeOptions,
    extra: Option<&CertificateCheck>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let ca = match signer.public_key().await {
        Ok(k) => k,
        Err(e) => {
            out.push(Check::fail("public key", e.report()));
            return out;
        }
    };
    let algs = match signer.algorithms().await {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            out.push(Check::fail("algorithms", "the key reports no algorithm"));
            return out;
        }
        Err(e) => {
            out.push(Check::fail("algorithms", e.report()));
            return out;
        }
    };
    out.push(Check::pass(
        "algorithms",
        algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
    ));
    for (i, &alg) in algs.iter().enumerate() {
        let msg = format!("sshca conformance message {i}");
        let name = format!("sign {}", alg.name());
        out.push(match signer.sign(alg, msg.as_bytes()).await {
            Err(e) => Check::fail(name, e.report()),
            Ok(sig) if sig.algorithm() != alg.algorithm() => Check::fail(
                name,
                format!("the signature is {}, not {}", sig.algorithm(), alg.name()),
            ),
            Ok(sig) => match verify_signature(&ca, msg.as_bytes(), &sig) {
                Err(e) => Check::fail(name, format!("the signature does not verify: {e}")),
                Ok(()) if verify_signature(&ca, b"another message", &sig).is_ok() => {
                    Check::fail(name, "the signature also verifies another message")
                }
                Ok(()) => Check::pass(name, "verifies under the public key"),
            },
        });
        let t = template(1000 + i as u64, 2);
        let name = format!("certificate {}", alg.name());
        out.push(
            match signer.sign_certificate(&t, &subject_key(), Some(alg)).await {
                Err(e) => Check::fail(name, e.report()),
                Ok(cert) => match check_certificate(&cert, &ca, &t, alg, extra) {
                    Ok(d) => Check::pass(name, d),
                    Err(e) => Check::fail(name, e),
                },
            },
        );
    }
    // Concurrent signing: every certificate valid, serials distinct.
    let name = format!("concurrent signing ({})", o.concurrency);
    let mut set = tokio::task::JoinSet::new();
    let first = algs[0];
    for i in 0..o.concurrency {
        let (s, ca) = (signer.clone(), ca.clone());
        set.spawn(async move {
            let t = template(5000 + i as u64, 2);
            let cert = s
                .sign_certificate(&t, &subject_key(), None)
                .await
                .map_err(|e| e.report())?;
            check_certificate(&cert, &ca, &t, first, None)?;
            Ok::<u64, String>(cert.serial())
        });
    }
    let mut serials = HashSet::new();
    let mut failed = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(serial)) => {
                serials.insert(serial);
            }
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(e) => {
                failed.get_or_insert(format!("a signing task failed: {e}"));
            }
        }
    }
    out.push(match failed {
        Some(e) => Check::fail(name, e),
        None if serials.len() != o.concurrency => Check::fail(name, "serials repeat"),
        None => Check::pass(name, format!("{} certificates, all valid", o.concurrency)),
    });
    // Many principals.
    let t = template(6000, o.principals);
    let name = format!("{} principals", o.principals);
    out.push(
        match signer.sign_certificate(&t, &subject_key(), None).await {
            Err(e) => Check::fail(name, e.report()),
            Ok(cert) => match check_certificate(&cert, &ca, &t, algs[0], None) {
                Ok(d) => Check::pass(name, d),
                Err(e) => Check::fail(name, e),
            },
        },
    );
    out
}
