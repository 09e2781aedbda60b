//! `sshca revoke` and `sshca krl build|inspect|check|fetch`: revocations in
//! the store, and the KRLs (with detached SSHSIG signatures) sshd reads
//! through `RevokedKeys`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};
use sshca::core::krl::{sha256_fingerprint, Krl};
use sshca::core::text::escape;
use sshca::signer::{Error, Result};

use crate::output::invalid;

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(&format!("cannot read the {what}"), path, &e))
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Krl> {
    Krl::decode(bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Arguments of `sshca revoke`.
#[cfg(feature = "store")]
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "key_id", "key", "ca_key"])))]
pub struct RevokeArgs {
    /// Store URL (default: the config's `[server] store`).
    #[arg(long)]
    store: Option<String>,
    /// The CA (`[ca.NAME]` of the config) whose KRL carries the revocation.
    #[arg(long)]
    ca: String,
    /// A serial (`N`) or a range (`N-M`) of certificates of the CA.
    #[arg(long)]
    serial: Option<String>,
    /// Certificates of the CA with this key id.
    #[arg(long)]
    key_id: Option<String>,
    /// A key (a public key or certificate file, or a key URI): the key
    /// itself, and so every certificate of it, by its SHA256 hash.
    #[arg(long)]
    key: Option<String>,
    /// A key of the CA itself (a key URI or public key file): every
    /// certificate it signed.
    #[arg(long)]
    ca_key: Option<String>,
    /// Why (kept in the store and the audit table).
    #[arg(long, default_value = "")]
    reason: String,
}

/// `sshca revoke`.
#[cfg(feature = "store")]
pub async fn revoke(a: RevokeArgs, config: &Path) -> Result<()> {
    use sshca_authority::revoke as rv;
    let cfg = sshca::config::Config::load(config)?;
    if !cfg.cas.contains_key(&a.ca) {
        return Err(Error::new(
            sshca::signer::ErrorKind::NotFound,
            format!(
                "no CA named `{}` in {} (CAs: {})",
                a.ca,
                config.display(),
                cfg.cas.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let registry = sshca::default_registry();
    let target = if let Some(s) = &a.serial {
        let (from, to) = rv::parse_serials(s)?;
        sshca_store::RevocationTarget::Serials { from, to }
    } else if let Some(id) = &a.key_id {
        rv::key_id_target(id)?
    } else if let Some(k) = &a.key {
        rv::key_target(
            &crate::keyref::load_ref(&registry, k, None)
                .await?
                .public_key(),
        )
    } else if let Some(k) = &a.ca_key {
        let key = crate::keyref::load_ref(&registry, k, None)
            .await?
            .public_key();
        rv::ca_key_target(&key)?
    } else {
        return Err(invalid(
            "nothing to revoke: give --serial, --key-id, --key or --ca-key",
        ));
    };
    let store = sshca_authority::open_store(a.store.as_deref(), &cfg).await?;
    let now = crate::output::now();
    let by = rv::Revoker {
        identity: crate::output::local_user(),
        source: "cli".into(),
        request_id: crate::output::cli_request_id(now),
    };
    let r = rv::revoke(&*store, &a.ca, target, &a.reason, &by, now).await?;
    println!(
        "revoked {} of CA `{}` in {}",
        rv::describe(&r.target),
        a.ca,
        store.describe()
    );
    Ok(())
}

/// `sshca krl`.
#[derive(Subcommand, Debug)]
pub enum KrlCmd {
    /// Build the KRL of a CA from the store's revocations: FILE and
    /// FILE.sig (an SSHSIG by the CA's current key, namespace sshca-krl).
    #[cfg(feature = "store")]
    Build {
        /// Store URL (default: the config's `[server] store`).
        #[arg(long)]
        store: Option<String>,
        /// The CA (`[ca.NAME]` of the config).
        #[arg(long)]
        ca: String,
        /// Where to write the KRL (FILE.sig beside it).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Leave out serials whose certificates have all expired.
        #[arg(long)]
        prune_expired: bool,
    },
    /// Show a KRL's contents (as `ssh-keygen -Q -l` does).
    Inspect {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The KRL.
        file: PathBuf,
    },
    /// Check keys and certificates against a KRL: exit status 1 when any is
    /// revoked.
    Check {
        /// The KRL.
        file: PathBuf,
        /// Public key or certificate files.
        #[arg(required = true)]
        keys: Vec<PathBuf>,
    },
    /// Fetch the KRL from a service (for a cron job on every host): written
    /// atomically, with its signature; the old file is kept when the new one
    /// does not verify or is older.
    #[cfg(feature = "client")]
    Fetch {
        /// Service URL (`https://HOST:PORT`).
        #[arg(long)]
        server: String,
        /// The CA (needed when the service has several).
        #[arg(long)]
        ca: Option<String>,
        /// Where to write the KRL (FILE.sig beside it).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// CA public keys (one per line, e.g. `sshca pubkey --all`): the
        /// signature must be by one of them, and the KRL may revoke
        /// certificates of these keys only. Required unless
        /// --insecure-no-verify.
        #[arg(long, required_unless_present = "insecure_no_verify")]
        verify_with: Option<PathBuf>,
        /// Install the KRL without checking its signature or whose
        /// certificates it revokes (whoever answers at --server decides
        /// what sshd refuses).
        #[arg(long, conflicts_with = "verify_with")]
        insecure_no_verify: bool,
        /// PEM certificates to trust for the service (default: the
        /// system's).
        #[arg(long)]
        server_ca: Option<PathBuf>,
    },
}

/// `sshca krl`.
pub async fn run(cmd: KrlCmd, #[allow(unused)] config: &Path) -> Result<ExitCode> {
    match cmd {
        #[cfg(feature = "store")]
        KrlCmd::Build {
            store,
            ca,
            output,
            prune_expired,
        } => build(store, &ca, &output, prune_expired, config).await,
        KrlCmd::Inspect { json, file } => inspect(&file, json),
        KrlCmd::Check { file, keys } => check(&file, &keys).await,
        #[cfg(feature = "client")]
        KrlCmd::Fetch {
            server,
            ca,
            output,
            verify_with,
            insecure_no_verify: _,
            server_ca,
        } => fetch(
            &server,
            ca.as_deref(),
            &output,
            verify_with.as_deref(),
            server_ca.as_deref(),
        )
        .await
        .map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(any(feature = "store", feature = "client"))]
fn sig_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

#[cfg(feature = "store")]
async fn build(
    store: Option<String>,
    ca: &str,
    output: &Path,
    prune_expired: bool,
    config: &Path,
) -> Result<ExitCode> {
    let cfg = sshca::config::Config::load(config)?;
    let opened = sshca_authority::OpenedCa::open(&cfg, ca).await?;
    let store = sshca_authority::open_store(store.as_deref(), &cfg).await?;
    let built =
        sshca_authority::build_krl(&*store, &opened, prune_expired, crate::output::now()).await?;
    // The signature first: a reader that sees the new KRL finds its
    // signature already there.
    crate::files::write_atomic(&sig_path(output), built.signature.as_bytes())?;
    crate::files::write_atomic(output, &built.krl)?;
    println!(
        "{}: KRL version {} of CA `{ca}`: {} revocations{}, {} keys, {} bytes; signature in {}",
        output.display(),
        built.version,
        built.revocations,
        if built.pruned > 0 {
            format!(" ({} expired serials left out)", built.pruned)
        } else {
            String::new()
        },
        opened.keys().count(),
        built.krl.len(),
        sig_path(output).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn timestamp(t: u64) -> String {
    sshca::core::validity::format_time(t)
}

fn key_line(blob: &[u8]) -> String {
    match sshca::core::krl::key_from_blob(blob) {
        Ok(k) => format!("{} {}", k.algorithm(), sshca::fingerprint(&k)),
        Err(_) => "(unreadable key)".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn krl_json(k: &Krl) -> Value {
    let sections: Vec<Value> = k
        .certs
        .iter()
        .map(|s| {
            json!({
                "ca_key": s.ca_key.as_ref().map(|c| format!("{} {}", c.algorithm(), sshca::fingerprint(c))),
                "serials": s.serials.ranges().iter().map(|&(lo, hi)| {
                    if lo == hi { json!(lo) } else { json!({"from": lo, "to": hi}) }
                }).collect::<Vec<_>>(),
                "serial_count": s.serials.count().to_string(),
                "key_ids": s.key_ids,
            })
        })
        .collect();
    json!({
        "krl_version": k.version,
        "generated_date": k.generated_date,
        "flags": k.flags,
        "comment": k.comment,
        "certificates": sections,
        "keys": k.keys.iter().map(|b| key_line(b)).collect::<Vec<_>>(),
        "sha1": k.sha1.iter().map(|h| format!("SHA1:{}", hex(h))).collect::<Vec<_>>(),
        "sha256": k.sha256.iter().map(sha256_fingerprint).collect::<Vec<_>>(),
        "signatures": k.signatures.iter().map(|s| key_line(&s.key)).collect::<Vec<_>>(),
    })
}

fn inspect(path: &Path, as_json: bool) -> Result<ExitCode> {
    let k = decode(path, &read(path, "KRL")?)?;
    if as_json {
        let text = serde_json::to_string_pretty(&krl_json(&k))
            .map_err(|e| crate::output::internal(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("# KRL version {}", k.version);
    println!("# Generated at {}", timestamp(k.generated_date));
    if !k.comment.is_empty() {
        println!("# Comment: {}", escape(&k.comment));
    }
    for s in &k.certs {
        println!();
        match &s.ca_key {
            Some(c) => println!("# CA key {} {}", c.algorithm(), sshca::fingerprint(c)),
            None => println!("# Wildcard CA"),
        }
        for &(lo, hi) in s.serials.ranges() {
            if lo == hi {
                println!("serial: {lo}");
            } else {
                println!("serial: {lo}-{hi}");
            }
        }
        for id in &s.key_ids {
            println!("id: {}", escape(id));
        }
    }
    for b in &k.keys {
        println!("key: {}", key_line(b));
    }
    for h in &k.sha256 {
        println!("hash: {}", sha256_fingerprint(h));
    }
    for h in &k.sha1 {
        println!("sha1: SHA1:{}", hex(h));
    }
    for s in &k.signatures {
        println!(
            "# signed (embedded signature section) by {}",
            key_line(&s.key)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(path: &Path, keys: &[PathBuf]) -> Result<ExitCode> {
    let k = decode(path, &read(path, "KRL")?)?;
    let registry = sshca::default_registry();
    let mut revoked = false;
    for key in keys {
        let arg = key.to_string_lossy();
        let why = match crate::keyref::load_ref(&registry, &arg, None).await? {
            crate::keyref::KeyRef::Certificate(c) => k.check_cert(&c),
            other => k.check_key(&other.public_key()),
        }
        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
        match why {
            Some(why) => {
                revoked = true;
                println!("{}: REVOKED ({why})", key.display());
            }
            None => println!("{}: ok", key.display()),
        }
    }
    Ok(if revoked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(feature = "client")]
pub(crate) async fn fetch(
    server: &str,
    ca: Option<&str>,
    output: &Path,
    verify_with: Option<&Path>,
    server_ca: Option<&Path>,
) -> Result<()> {
    if !server.starts_with("https://") {
        return Err(invalid(format!(
            "--server {server}: the service is only reachable over https://"
        )));
    }
    let trusted = match verify_with {
        Some(p) => Some(read_trusted(p)?),
        None => None,
    };
    let client = crate::request::https_client(server_ca, None)?;
    let query = match ca {
        Some(c)
            if !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            format!("?ca={c}")
        }
        Some(c) => {
            return Err(invalid(format!(
                "--ca {}: a CA name is letters, digits, `.`, `_` and `-`",
                escape(c)
            )))
        }
        None => String::new(),
    };
    let base = server.trim_end_matches('/');
    // A revocation between the two requests (or two replicas behind a load
    // balancer) gives a KRL and a signature of different builds: fetch the
    // pair again, three times at most.
    let mut last_err = None;
    for _ in 0..3 {
        let krl = get(&client, &format!("{base}/v1/krl{query}")).await?;
        let sig = get(&client, &format!("{base}/v1/krl.sig{query}")).await?;
        if let Some(keys) = &trusted {
            if let Err(e) = verify(&krl, &sig, keys) {
                last_err = Some(e);
                continue;
            }
        }
        return install(output, &krl, &sig, trusted.as_deref());
    }
    Err(last_err.unwrap_or_else(|| invalid("the KRL did not verify")))
}

#[cfg(feature = "client")]
async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>> {
    let r = client.get(url).send().await.map_err(|e| {
        Error::new(sshca::signer::ErrorKind::Unavailable, format!("GET {url}")).with_source(e)
    })?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| {
        Error::new(
            sshca::signer::ErrorKind::Unavailable,
            format!("GET {url}: reading the body"),
        )
        .with_source(e)
    })?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let kind = if status.is_server_error() {
            sshca::signer::ErrorKind::Unavailable
        } else {
            sshca::signer::ErrorKind::InvalidInput
        };
        return Err(Error::new(kind, format!("GET {url}: {status} {msg}")));
    }
    Ok(body.to_vec())
}

#[cfg(feature = "client")]
fn read_trusted(path: &Path) -> Result<Vec<sshca::core::KeyData>> {
    let text = String::from_utf8(read(path, "trusted CA keys (--verify-with)")?)
        .map_err(|_| invalid(format!("{}: not text", path.display())))?;
    let keys = key_lines(&text, &path.display().to_string())?;
    if keys.is_empty() {
        return Err(invalid(format!("{}: no public key", path.display())));
    }
    Ok(keys)
}

/// The keys of CA key lines (`/v1/ca/NAME` bundles, TrustedUserCAKeys
/// files): plain lines, or `cert-authority` / `@cert-authority PATTERN`
/// ones; `#` comments and blank lines skipped, anything else an error
/// naming `what`.
#[cfg(feature = "client")]
pub(crate) fn key_lines(text: &str, what: &str) -> Result<Vec<sshca::core::KeyData>> {
    let mut keys = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let start = words
            .iter()
            .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
            .ok_or_else(|| invalid(format!("{what}: `{}` is not a key line", escape(line))))?;
        let key = sshca::core::PublicKey::from_openssh(&words[start..].join(" "))
            .map_err(|e| invalid(format!("{what}: {e}")))?;
        keys.push(key.key_data().clone());
    }
    Ok(keys)
}

#[cfg(feature = "client")]
fn verify(krl: &[u8], sig: &[u8], keys: &[sshca::core::KeyData]) -> Result<()> {
    let sig =
        sshca::core::sshsig::decode(sig).map_err(|e| invalid(format!("the KRL signature: {e}")))?;
    let signer = sshca::core::sshsig::verify(&sig, sshca::core::krl::SSHSIG_NAMESPACE, krl)
        .map_err(|e| invalid(format!("the KRL signature does not verify: {e}")))?;
    if !keys.contains(signer) {
        return Err(invalid(format!(
            "the KRL is signed by {}, not by a key of --verify-with",
            sshca::fingerprint(signer)
        )));
    }
    Ok(())
}

#[cfg(feature = "client")]
fn install(
    output: &Path,
    krl: &[u8],
    sig: &[u8],
    trusted: Option<&[sshca::core::KeyData]>,
) -> Result<()> {
    let new = decode(Path::new("the fetched KRL"), krl)?;
    if let Some(keys) = trusted {
        // A KRL signed by one of our CAs, but revoking for another (or for
        // every CA: a wildcard section), is not ours to install.
        for section in &new.certs {
            match &section.ca_key {
                Some(k) if keys.contains(k) => {}
                Some(k) => {
                    return Err(invalid(format!(
                        "the fetched KRL revokes certificates of CA key {}, which is not in \
                         --verify-with: kept {}",
                        sshca::fingerprint(k),
                        output.display()
                    )))
                }
                None => {
                    return Err(invalid(format!(
                        "the fetched KRL has a wildcard section (certificates of any CA): kept {}",
                        output.display()
                    )))
                }
            }
        }
    }
    // The file in place, read once. Its version holds back an older KRL
    // only when its own `.sig` verifies under --verify-with: a file a rogue
    // answer wrote, or that someone put there, pins nothing.
    let old_bytes = std::fs::read(output).ok();
    let floor = old_bytes.as_deref().and_then(|old| {
        if let Some(keys) = trusted {
            let sig = std::fs::read(sig_path(output)).ok()?;
            verify(old, &sig, keys).ok()?;
        }
        Krl::decode(old).ok().map(|k| k.version)
    });
    if let Some(old) = floor {
        if new.version < old {
            return Err(invalid(format!(
                "the fetched KRL (version {}) is older than {} (version {old}): kept the old one",
                new.version,
                output.display(),
            )));
        }
        if new.version == old && old_bytes.as_deref() == Some(krl) {
            println!(
                "{}: KRL version {} unchanged",
                output.display(),
                new.version
            );
            return Ok(());
        }
    }
    crate::files::write_atomic(&sig_path(output), sig)?;
    crate::files::write_atomic(output, krl)?;
    println!(
        "{}: KRL version {} ({} bytes)",
        output.display(),
        new.version,
        krl.len()
    );
    Ok(())
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;

    #[test]
    fn key_lines_take_every_form_of_a_ca_line() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1i9NcBEhwWrvjHucG2W9YoKCOR9B5MEd2beUZ9IPRa";
        let text = format!(
            "# users\n{key} users\n@cert-authority *.example {key}\ncert-authority {key}\n"
        );
        let keys = key_lines(&text, "bundle").unwrap();
        assert_eq!(keys.len(), 3);
        let want = sshca::core::PublicKey::from_openssh(key).unwrap();
        assert!(keys.iter().all(|k| k == want.key_data()));
        let e = key_lines("not a key\n", "bundle").unwrap_err().to_string();
        assert!(e.contains("bundle") && e.contains("not a key line"), "{e}");
    }
}
