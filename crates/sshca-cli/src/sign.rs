//! `sshca sign`: public keys into certificates, with the flags of
//! `ssh-keygen -s`, directly or as a request under a policy.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use sshca::config::PolicyEntry;
use sshca::core::options::OptionsBuilder;
use sshca::core::policy::Request;
use sshca::core::validity::parse_validity;
use sshca::core::{random_serial, CertTemplate, CertType, SigAlg};
use sshca::signer::{Error, ErrorKind, KeySigner, LimitSigner, Result, SignerExt};
use sshca_authority::Identity;

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
    /// The flags are a request merged under a policy for a local identity,
    /// through the authority.
    Policy(Box<PolicyEntry>, Identity, Request),
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
        if entry.approval.is_some() || !entry.webhooks.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "policy `{name}` asks {} before issuing, which only `sshca serve` does; \
                     ask the service with `sshca request`",
                    if entry.approval.is_some() {
                        "approvers"
                    } else {
                        "webhooks"
                    }
                ),
            ));
        }
        let mut opts = OptionsBuilder::empty();
        opts.apply_all(a.options.iter().map(String::as_str))?;
        let (crit, ext) = opts.build()?;
        let cleared = a.options.iter().any(|o| o.eq_ignore_ascii_case("clear"));
        let identity = Identity::local(a.requester.clone().or_else(|| std::env::var("USER").ok()));
        let req = Request {
            requester: None,
            requester_source: None,
            cert_type: a.host.then_some(CertType::Host),
            principals,
            critical_options: (!crit.is_empty()).then_some(crit),
            extensions: (!ext.is_empty() || cleared).then_some(ext),
            validity,
            key_id: a.key_id.clone(),
            serial: a.serial,
            // The identity's: none for a local run.
            claims: Default::default(),
        };
        return Ok(Plan {
            ca_uri: ca.uri()?,
            how: Issue::Policy(Box::new(entry.clone()), identity, req),
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
        ca_uri: crate::keyref::ca_uri(a.ca.as_deref().unwrap_or_default()),
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
    // The CA key opens (a KMS round trip, a PIN, an unwrap) while the
    // subject keys are read; each key is signed as soon as it is read and
    // the CA is open, while the next ones are read. Certificates are staged
    // and committed together at the end, so a subject key that fails its
    // checks stops the run with nothing written, as if every key had been
    // checked before signing.
    let registry = sshca::default_registry();
    let ca_uri = plan.ca_uri.clone();
    let mut opening = Some(tokio::spawn(async move { registry.open(&ca_uri).await }));
    let mut ca: Option<std::sync::Arc<CaSigner>> = None;
    let issued_dir = match &plan.how {
        Issue::Policy(entry, ..) => entry.issued_dir.clone(),
        Issue::Direct(_) => None,
    };
    let batch = std::sync::Arc::new(crate::files::Batch::new()?);
    let mut tasks = tokio::task::JoinSet::new();
    let mut waiting = Vec::new();
    for (index, k) in a.keys.iter().enumerate() {
        let subject = match read_subject(&a, &plan, k) {
            Ok(s) => s,
            Err(e) => {
                tasks.shutdown().await;
                return Err(e);
            }
        };
        waiting.push((index, subject));
        if ca.is_none() && opening.as_ref().is_some_and(|o| o.is_finished()) {
            ca = Some(opened(opening.take()).await?);
        }
        if let Some(ca) = &ca {
            for (index, subject) in waiting.drain(..) {
                spawn_issue(&mut tasks, ca, alg, &issued_dir, &batch, index, subject);
            }
        }
    }
    let ca = match ca {
        Some(ca) => ca,
        None => opened(opening.take()).await?,
    };
    for (index, subject) in waiting.drain(..) {
        spawn_issue(&mut tasks, &ca, alg, &issued_dir, &batch, index, subject);
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| internal("a signing task failed").with_source(e))?);
    }
    results.sort_by_key(|(i, _)| *i);
    let committed = std::sync::Arc::try_unwrap(batch)
        .map_err(|_| internal("a signing task still holds the file batch"))
        .and_then(crate::files::Batch::commit);
    let mut first_err = None;
    for (_, r) in results {
        match r {
            Ok(issued) => {
                if let Some(text) = issued.stdout {
                    std::io::stdout().write_all(text.as_bytes()).map_err(|e| {
                        Error::new(ErrorKind::Io, "cannot write stdout").with_source(e)
                    })?;
                }
                if !a.quiet {
                    eprintln!("{}", issued.report);
                }
            }
            // The first error is printed by main; later ones here.
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("sshca: error: {e}"),
        }
    }
    match (first_err, committed) {
        (Some(e), Err(c)) => {
            eprintln!("sshca: error: {c}");
            Err(e)
        }
        (Some(e), Ok(())) | (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(()),
    }
}

/// The CA key as the tasks share it.
type CaSigner = LimitSigner<std::sync::Arc<dyn KeySigner>>;

/// A subject key read and checked, with its template: what one task signs.
struct Subject {
    path: Option<PathBuf>,
    key: sshca::core::KeyData,
    template: CertTemplate,
    origin: String,
}

/// Reads subject key `k` (`-` for stdin) and makes its template (the
/// policy merged, or the direct template with a serial).
fn read_subject(a: &SignArgs, plan: &Plan, k: &str) -> Result<Subject> {
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
        Issue::Policy(entry, identity, req) => {
            let prepared = sshca_authority::issue::prepare(
                entry,
                identity,
                &key,
                req.clone(),
                now(),
                a.serial.unwrap_or_else(random_serial),
            )
            .map_err(|e| Error::from(e).context(&origin))?;
            for c in &prepared.changes {
                eprintln!("sshca: {origin}: policy `{}`: {c}", entry.policy.name);
            }
            prepared.template
        }
        Issue::Direct(template) => {
            let mut t = template.clone();
            t.serial = a.serial.unwrap_or_else(random_serial);
            t
        }
    };
    t.comment = comment;
    Ok(Subject {
        path,
        key,
        template: t,
        origin,
    })
}

/// The CA signer once it is open, limited to 32 signatures at once (a KMS
/// round trip per certificate).
async fn opened(
    opening: Option<tokio::task::JoinHandle<Result<std::sync::Arc<dyn KeySigner>>>>,
) -> Result<std::sync::Arc<CaSigner>> {
    let opening = opening.ok_or_else(|| internal("the CA key was opened twice"))?;
    let ca = opening
        .await
        .map_err(|e| internal("opening the CA key failed").with_source(e))??;
    Ok(std::sync::Arc::new(LimitSigner::new(ca, 32)))
}

/// Starts the task that signs `subject` and stages its certificate.
fn spawn_issue(
    tasks: &mut tokio::task::JoinSet<(usize, Result<Issued>)>,
    ca: &std::sync::Arc<CaSigner>,
    alg: Option<SigAlg>,
    issued_dir: &Option<PathBuf>,
    batch: &std::sync::Arc<crate::files::Batch>,
    index: usize,
    subject: Subject,
) {
    let (ca, issued_dir, batch) = (ca.clone(), issued_dir.clone(), batch.clone());
    tasks.spawn(async move {
        let out = Output {
            issued_dir: issued_dir.as_deref(),
            batch: &batch,
        };
        let r = issue_one(&*ca, alg, subject, out).await;
        (index, r)
    });
}

/// Where a signed certificate goes besides its own file.
struct Output<'a> {
    /// The policy's directory of issued copies.
    issued_dir: Option<&'a Path>,
    /// The files of this run, made durable together.
    batch: &'a crate::files::Batch,
}

/// What one task issued: its report line, and the certificate text when it
/// goes to stdout.
struct Issued {
    report: String,
    stdout: Option<String>,
}

/// Signs one key and stages its certificate; returns the report line.
async fn issue_one(
    ca: &dyn KeySigner,
    alg: Option<SigAlg>,
    subject: Subject,
    out: Output<'_>,
) -> Result<Issued> {
    let Subject {
        path,
        key,
        template: t,
        origin,
    } = subject;
    let cert_type = t.cert_type;
    let cert = ca
        .sign_certificate(&t, &key, alg)
        .await
        .map_err(|e| e.context(format!("signing {origin}")))?;
    let text = cert.to_openssh()? + "\n";
    if let Some(dir) = out.issued_dir {
        crate::files::stage_issued_copy(out.batch, dir, &cert, &text).await?;
    }
    let what = crate::output::issued_summary(&cert);
    match path {
        // Printed once every key has been read, like the files' commit.
        None => Ok(Issued {
            report: format!("Signed {cert_type} key from stdin: {what}"),
            stdout: Some(text),
        }),
        Some(p) => {
            let file = crate::files::cert_path_for(&p);
            // A small unsynced write: staged in place, flushed with the
            // batch.
            out.batch
                .stage(&file, text.into_bytes(), 0o644, true)
                .await?;
            Ok(Issued {
                report: format!("Signed {cert_type} key {}: {what}", file.display()),
                stdout: None,
            })
        }
    }
}
