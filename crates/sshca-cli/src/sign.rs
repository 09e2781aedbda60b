//! `sshca sign`: public keys into certificates, with the flags of
//! `ssh-keygen -s`, directly or as a request under a policy.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use sshca::core::options::OptionsBuilder;
use sshca::core::policy::Request;
use sshca::core::validity::parse_validity;
use sshca::core::{random_serial, CertTemplate, CertType, SigAlg};
use sshca::signer::{Error, ErrorKind, LimitSigner, Result, SignerExt};

use crate::output::{internal, invalid, now, read_input};

#[derive(Args, Debug)]
#[command(disable_help_flag = true, args_override_self = true)]
pub struct SignArgs {
    /// CA key URI (a plain path means `file:PATH`).
    #[arg(
        long = "ca",
        short = 's',
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    ca: Option<String>,
    /// Sign under this policy of the config file (the flags become the request).
    #[arg(long)]
    policy: Option<String>,
    /// Requester identity matched against the policy's `requesters`
    /// (default: $USER).
    #[arg(long, requires = "policy")]
    requester: Option<String>,
    /// Key identifier.
    #[arg(short = 'I')]
    key_id: Option<String>,
    /// Principals, comma-separated.
    #[arg(short = 'n')]
    principals: Option<String>,
    /// Validity interval (ssh-keygen -V syntax; default always:forever, or
    /// the policy's ttl).
    #[arg(short = 'V', allow_hyphen_values = true)]
    validity: Option<String>,
    /// Serial number (default: random, non-zero).
    #[arg(short = 'z')]
    serial: Option<u64>,
    /// Certificate option (ssh-keygen -O syntax); repeatable.
    #[arg(short = 'O', allow_hyphen_values = true)]
    options: Vec<String>,
    /// Make host certificates.
    #[arg(short = 'h')]
    host: bool,
    /// Quiet: no report line per certificate.
    #[arg(short = 'q')]
    quiet: bool,
    /// Signature algorithm of an RSA CA (rsa-sha2-256 or rsa-sha2-512).
    #[arg(short = 't')]
    sig_alg: Option<String>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Public keys (or private keys with KEY.pub beside them); `-` for stdin.
    #[arg(required = true)]
    keys: Vec<String>,
}

/// What `sshca sign` will issue: the CA and how each certificate's template
/// is made.
struct Plan {
    ca_uri: String,
    how: Issue,
}

// One value per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Issue {
    /// The flags are the template (ssh-keygen semantics).
    Direct(CertTemplate),
    /// The flags are a request merged under a policy; copies go to the dir.
    Policy(sshca::core::policy::Policy, Request, Option<PathBuf>),
}

fn plan(a: &SignArgs, config: &Path) -> Result<Plan> {
    let now = now();
    let validity = a
        .validity
        .as_deref()
        .map(|v| parse_validity(v, now))
        .transpose()?;
    let principals: Option<Vec<String>> = a
        .principals
        .as_ref()
        .map(|p| p.split(',').map(str::to_owned).collect());
    if let Some(name) = &a.policy {
        let cfg = sshca::config::Config::load(config)?;
        let (entry, ca) = cfg.policy(name)?;
        let mut opts = OptionsBuilder::empty();
        opts.apply_all(a.options.iter().map(String::as_str))?;
        let (crit, ext) = opts.build()?;
        let cleared = a.options.iter().any(|o| o.eq_ignore_ascii_case("clear"));
        let req = Request {
            requester: a.requester.clone().or_else(|| std::env::var("USER").ok()),
            cert_type: a.host.then_some(CertType::Host),
            principals,
            critical_options: (!crit.is_empty()).then_some(crit),
            extensions: (!ext.is_empty() || cleared).then_some(ext),
            validity,
            key_id: a.key_id.clone(),
            serial: a.serial,
            // Local signing has no verified credential: a policy using
            // `{claims.NAME}` refuses, naming the claim.
            claims: Default::default(),
        };
        return Ok(Plan {
            ca_uri: ca.uri()?,
            how: Issue::Policy(entry.policy.clone(), req, entry.issued_dir.clone()),
        });
    }
    if let Some(k) = &a.key_id {
        sshca::core::text::check_printable("key id (-I)", k)?;
    }
    for p in principals.iter().flatten() {
        sshca::core::text::check_printable("principal (-n)", p)?;
    }
    let cert_type = if a.host {
        CertType::Host
    } else {
        CertType::User
    };
    let mut opts = OptionsBuilder::new(cert_type);
    opts.apply_all(a.options.iter().map(String::as_str))?;
    let mut t = CertTemplate::new(cert_type, a.key_id.clone().unwrap_or_default());
    opts.apply_to(&mut t)?;
    let v = validity.unwrap_or(sshca::core::validity::Validity {
        valid_after: 0,
        valid_before: u64::MAX,
    });
    t.valid_after = v.valid_after;
    t.valid_before = v.valid_before;
    t.principals = principals.unwrap_or_default();
    Ok(Plan {
        ca_uri: sshca::ca_uri(a.ca.as_deref().unwrap_or_default()),
        how: Issue::Direct(t),
    })
}

/// `sshca sign`.
pub async fn run(a: SignArgs, config: &Path) -> Result<()> {
    let plan = plan(&a, config)?;
    let alg = a
        .sig_alg
        .as_deref()
        .map(|s| {
            s.parse::<SigAlg>()
                .map_err(|e| invalid(format!("-t {s}: {e}")))
        })
        .transpose()?;
    if a.keys.iter().filter(|k| *k == "-").count() > 1 {
        return Err(invalid("`-` (stdin) can be given only once"));
    }
    if matches!(plan.how, Issue::Policy(..)) && a.serial.is_some() && a.keys.len() > 1 {
        return Err(Error::new(
            ErrorKind::Policy,
            format!(
                "-z {} with {} keys would issue one serial several times; \
                 serials must be unique under a policy",
                a.serial.unwrap_or_default(),
                a.keys.len()
            ),
        ));
    }
    // Read and check every subject key (and the policy) before signing anything.
    let mut subjects = Vec::new();
    for k in &a.keys {
        let (path, key, comment) = if k == "-" {
            let text = read_input("-")?;
            let pk = sshca::parse_public_key(&text, "stdin")?;
            (None, pk.key_data().clone(), pk.comment().to_owned())
        } else {
            let (key, comment) = sshca::read_subject_key(Path::new(k))?;
            (Some(PathBuf::from(k)), key, comment)
        };
        let origin = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdin".into());
        let mut t = match &plan.how {
            Issue::Policy(policy, req, _) => {
                let (t, changes) = policy
                    .merge(req, &key, now(), a.serial.unwrap_or_else(random_serial))
                    .map_err(|e| Error::new(ErrorKind::Policy, e.to_string()).context(&origin))?;
                for c in changes {
                    eprintln!("sshca: {origin}: policy `{}`: {c}", policy.name);
                }
                t
            }
            Issue::Direct(template) => {
                let mut t = template.clone();
                t.serial = a.serial.unwrap_or_else(random_serial);
                t
            }
        };
        t.comment = comment;
        subjects.push((path, key, t, origin));
    }
    let registry = sshca::default_registry();
    // Sign concurrently (a KMS round trip per certificate), at most 32 at once.
    let ca = std::sync::Arc::new(LimitSigner::new(registry.open(&plan.ca_uri).await?, 32));
    let issued_dir = match &plan.how {
        Issue::Policy(_, _, dir) => dir.clone(),
        Issue::Direct(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (path, key, t, origin)) in subjects.into_iter().enumerate() {
        let ca = ca.clone();
        let issued_dir = issued_dir.clone();
        tasks.spawn(async move {
            let r = issue_one(&*ca, alg, path, key, t, &origin, issued_dir.as_deref()).await;
            (index, r)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| internal("a signing task failed").with_source(e))?);
    }
    results.sort_by_key(|(i, _)| *i);
    let mut first_err = None;
    for (_, r) in results {
        match r {
            Ok(_) if a.quiet => {}
            Ok(msg) => eprintln!("{msg}"),
            // The first error is printed by main; later ones here.
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("sshca: error: {e}"),
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Signs one key and writes its certificate; returns the report line.
async fn issue_one(
    ca: &dyn sshca::signer::KeySigner,
    alg: Option<SigAlg>,
    path: Option<PathBuf>,
    key: sshca::core::KeyData,
    t: CertTemplate,
    origin: &str,
    issued_dir: Option<&Path>,
) -> Result<String> {
    let cert_type = t.cert_type;
    let cert = ca
        .sign_certificate(&t, &key, alg)
        .await
        .map_err(|e| e.context(format!("signing {origin}")))?;
    let text = cert.to_openssh()? + "\n";
    if let Some(dir) = issued_dir {
        crate::files::save_issued_copy(dir, &cert, &text)?;
    }
    let what = crate::output::issued_summary(&cert);
    match path {
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error::new(ErrorKind::Io, "cannot write stdout").with_source(e))?;
            Ok(format!("Signed {cert_type} key from stdin: {what}"))
        }
        Some(p) => {
            let out = crate::files::cert_path_for(&p);
            // Written (and synced) on the blocking pool, a few at a time, so
            // the syncs of a bulk run overlap.
            static WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);
            let _permit = WRITERS
                .acquire()
                .await
                .map_err(|e| internal(format!("cannot write {}", out.display())).with_source(e))?;
            let out = tokio::task::spawn_blocking(move || {
                crate::files::write_atomic(&out, text.as_bytes()).map(|()| out)
            })
            .await
            .map_err(|e| internal("a write task failed").with_source(e))??;
            Ok(format!("Signed {cert_type} key {}: {what}", out.display()))
        }
    }
}
