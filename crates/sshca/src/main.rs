//! The `sshca` command line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use sshca::core::options::OptionsBuilder;
use sshca::core::validity::{parse_point, parse_validity};
use sshca::core::{random_serial, CertTemplate, CertType, Certificate, SigAlg, Validation};
use sshca::signer::{Error, ErrorKind, Result, SignerExt};

/// OpenSSH certificate authority whose CA key can stay in a KMS.
#[derive(Parser, Debug)]
#[command(name = "sshca", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sign public keys into certificates (flags as `ssh-keygen -s`).
    Sign(SignArgs),
    /// Show a certificate's fields (like `ssh-keygen -L`).
    Inspect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Certificate file (`-` for stdin).
        cert: String,
    },
    /// Check a certificate: CA signature, validity, principal, type.
    Verify {
        /// Trusted CA: a key URI or a CA public key file.
        #[arg(long)]
        ca: String,
        /// A principal the certificate must name.
        #[arg(long)]
        principal: Option<String>,
        /// Time to check at: unix seconds, YYYYMMDD[HHMM[SS]] (UTC) or `now`.
        #[arg(long, default_value = "now")]
        at: String,
        /// Required certificate type (`user` or `host`).
        #[arg(long = "type")]
        cert_type: Option<String>,
        /// Certificate file (`-` for stdin).
        cert: String,
    },
    /// Print the CA public key line (TrustedUserCAKeys) or known_hosts line.
    Pubkey {
        /// Print `@cert-authority PATTERN KEY` for known_hosts.
        #[arg(long = "known-hosts", value_name = "PATTERN")]
        known_hosts: Option<String>,
        /// The CA key URI.
        uri: String,
    },
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
struct SignArgs {
    /// CA key URI (a plain path means `file:PATH`).
    #[arg(long = "ca", short = 's')]
    ca: String,
    /// Key identifier.
    #[arg(short = 'I', default_value = "")]
    key_id: String,
    /// Principals, comma-separated.
    #[arg(short = 'n')]
    principals: Option<String>,
    /// Validity interval (ssh-keygen -V syntax).
    #[arg(
        short = 'V',
        allow_hyphen_values = true,
        default_value = "always:forever"
    )]
    validity: String,
    /// Serial number (default: random, non-zero).
    #[arg(short = 'z')]
    serial: Option<u64>,
    /// Certificate option (ssh-keygen -O syntax); repeatable.
    #[arg(short = 'O', allow_hyphen_values = true)]
    options: Vec<String>,
    /// Make host certificates.
    #[arg(short = 'h')]
    host: bool,
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

fn read_input(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| invalid(format!("cannot read stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(arg).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::InvalidInput
            };
            Error::new(kind, format!("cannot read {arg}: {e}"))
        })
    }
}

fn read_cert(arg: &str) -> Result<Certificate> {
    let text = read_input(arg)?;
    Certificate::from_openssh(&text).map_err(|e| invalid(format!("{arg}: {e}")))
}

async fn sign(a: SignArgs) -> Result<()> {
    let cert_type = if a.host {
        CertType::Host
    } else {
        CertType::User
    };
    let validity = parse_validity(&a.validity, now())?;
    let mut opts = OptionsBuilder::new(cert_type);
    opts.apply_all(a.options.iter().map(String::as_str))?;
    let (critical, extensions) = opts.build()?;
    let alg = a
        .sig_alg
        .as_deref()
        .map(|s| {
            s.parse::<SigAlg>()
                .map_err(|e| invalid(format!("-t {s}: {e}")))
        })
        .transpose()?;
    let principals: Vec<String> = match &a.principals {
        Some(p) => p.split(',').map(str::to_owned).collect(),
        None => Vec::new(),
    };
    if a.keys.iter().filter(|k| *k == "-").count() > 1 {
        return Err(invalid("`-` (stdin) can be given only once"));
    }
    // Read and check every subject key before signing anything.
    let mut subjects = Vec::new();
    for k in &a.keys {
        if k == "-" {
            let text = read_input("-")?;
            let pk = sshca::parse_public_key(&text, "stdin")?;
            subjects.push((None, pk.key_data().clone(), pk.comment().to_owned()));
        } else {
            let (key, comment) = sshca::read_subject_key(Path::new(k))?;
            subjects.push((Some(PathBuf::from(k)), key, comment));
        }
    }
    let registry = sshca::default_registry();
    let ca = registry.open(&sshca::ca_uri(&a.ca)).await?;
    for (path, key, comment) in subjects {
        let mut t = CertTemplate::new(cert_type, a.key_id.clone());
        t.principals = principals.clone();
        t.valid_after = validity.valid_after;
        t.valid_before = validity.valid_before;
        t.serial = a.serial.unwrap_or_else(random_serial);
        t.critical_options = critical.clone();
        t.extensions = extensions.clone();
        t.comment = comment;
        let origin = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdin".into());
        let cert = ca
            .sign_certificate(&t, &key, alg)
            .await
            .map_err(|e| e.context(format!("signing {origin}")))?;
        let text = cert.to_openssh()? + "\n";
        let info = sshca::CertInfo::new(&cert);
        let what = format!(
            "id \"{}\" serial {}{} valid {}",
            info.key_id,
            info.serial,
            if info.principals.is_empty() {
                String::new()
            } else {
                format!(" for {}", info.principals.join(","))
            },
            describe_validity(info.valid_after, info.valid_before)
        );
        match path {
            None => {
                std::io::stdout()
                    .write_all(text.as_bytes())
                    .map_err(|e| invalid(format!("cannot write stdout: {e}")))?;
                eprintln!("Signed {cert_type} key from stdin: {what}");
            }
            Some(p) => {
                let out = sshca::cert_path_for(&p);
                sshca::write_atomic(&out, text.as_bytes())?;
                eprintln!("Signed {cert_type} key {}: {what}", out.display());
            }
        }
    }
    Ok(())
}

fn describe_validity(after: u64, before: u64) -> String {
    use sshca::core::validity::format_time;
    match (after, before) {
        (0, u64::MAX) => "forever".into(),
        (a, u64::MAX) => format!("after {}", format_time(a)),
        (0, b) => format!("before {}", format_time(b)),
        (a, b) => format!("from {} to {}", format_time(a), format_time(b)),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Sign(a) => sign(a).await.map(|_| ExitCode::SUCCESS),
        Cmd::Inspect { json, cert } => {
            let c = read_cert(&cert)?;
            let info = sshca::CertInfo::new(&c);
            if json {
                let s = serde_json::to_string_pretty(&info)
                    .map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
                println!("{s}");
            } else {
                print!("{}", info.to_text(&cert, &c));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            ca,
            principal,
            at,
            cert_type,
            cert,
        } => {
            let c = read_cert(&cert)?;
            let registry = sshca::default_registry();
            let ca_key = sshca::resolve_ca_public_key(&registry, &ca).await?;
            let at = parse_point(&at, now())?;
            let cert_type = cert_type
                .as_deref()
                .map(str::parse::<CertType>)
                .transpose()?;
            let keys = [ca_key];
            let v = Validation {
                ca_keys: &keys,
                at,
                principal: principal.as_deref(),
                cert_type,
            };
            match c.validate(&v) {
                Ok(()) => {
                    println!(
                        "{cert}: valid {} certificate, serial {}, signed by {}",
                        c.cert_type(),
                        c.serial(),
                        c.signing_ca_fingerprint()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("sshca: {cert}: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Pubkey { known_hosts, uri } => {
            let registry = sshca::default_registry();
            let signer = registry.open(&sshca::ca_uri(&uri)).await?;
            let key = signer.public_key().await?;
            println!("{}", sshca::ca_line(&key, known_hosts.as_deref(), "")?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sshca: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sshca: error: {e}");
            ExitCode::from(1)
        }
    }
}
