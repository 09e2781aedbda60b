//! `sshca audit`: the events the signing service and the offline commands
//! recorded; `sshca audit verify` checks the hash chains; `sshca audit
//! export` writes a time range as JSON lines with the chains' heads, and
//! an SSHSIG over it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sshca::core::HashAlg;
use sshca::signer::{Error, ErrorKind, Result, SignerExt};
use sshca_store::chain::{event_json, Verifier};
use sshca_store::{AuditRow, ChainHead, Store};
use time::format_description::well_known::Rfc3339;

use crate::output::{invalid, to_json};
use crate::records::{open_store, StoreArg};

/// The SSHSIG namespace of audit exports.
pub const AUDIT_NAMESPACE: &str = "sshca-audit";

/// Rows read from the store at a time.
const PAGE: u32 = 1000;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    #[command(flatten)]
    store: StoreArg,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Checks every audit chain: exits 0 when each is intact, else 1
    /// naming the first broken link (an edited, deleted or reordered row,
    /// or a recorded head no longer there).
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// A head recorded earlier (REPLICA:SEQ:HASH, from an export or a
        /// sink): the chain must still hold it. Repeatable.
        #[arg(long = "head", value_name = "REPLICA:SEQ:HASH")]
        heads: Vec<String>,
        /// Read the heads of an export (its `chain_head` lines).
        #[arg(long, value_name = "FILE")]
        heads_from: Option<PathBuf>,
    },
    /// Writes the events of a time range (JSON lines, then one
    /// `chain_head` line per chain) and FILE.sig, an SSHSIG (namespace
    /// `sshca-audit`) that `ssh-keygen -Y verify` checks.
    Export {
        #[command(flatten)]
        store: StoreArg,
        /// First instant (RFC 3339, inclusive).
        #[arg(long)]
        since: String,
        /// Last instant (RFC 3339, exclusive); now when absent.
        #[arg(long)]
        until: Option<String>,
        /// The key that signs the export (a key URI or file).
        #[arg(long, value_name = "URI")]
        sign_with: String,
        /// Where to write the export (FILE.sig beside it).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// `sshca audit` and its subcommands.
pub async fn run(a: AuditArgs, config: &Path) -> Result<ExitCode> {
    match a.cmd {
        None => list(&a.store, a.limit, config)
            .await
            .map(|()| ExitCode::SUCCESS),
        Some(AuditCmd::Verify {
            store,
            heads,
            heads_from,
        }) => verify(&store, &heads, heads_from.as_deref(), config).await,
        Some(AuditCmd::Export {
            store,
            since,
            until,
            sign_with,
            output,
        }) => {
            let since = parse_time("--since", &since)?;
            let until = match until {
                Some(u) => parse_time("--until", &u)?,
                None => crate::output::now().saturating_add(1),
            };
            if until <= since {
                return Err(invalid("--until must be after --since"));
            }
            let s = open_store(&store, config).await?;
            export(&*s, since, until, &sign_with, &output).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `sshca audit`: the newest events.
async fn list(store: &StoreArg, limit: u32, config: &Path) -> Result<()> {
    let s = open_store(store, config).await?;
    let rows = s.audit_events(limit).await?;
    if store.json {
        println!("{}", to_json(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10}  {:<16}  {:<20}  {:<11}  {:<12}  {:<6}  {:<20}  REASON",
        "AT", "REQUEST", "IDENTITY", "SOURCE", "POLICY", "STATUS", "CODE"
    );
    for r in rows {
        println!(
            "{:<10}  {:<16}  {:<20}  {:<11}  {:<12}  {:<6}  {:<20}  {}",
            r.at,
            r.request_id,
            sshca::core::text::escape(r.identity.as_deref().unwrap_or("-")),
            r.auth_source.as_deref().unwrap_or("-"),
            sshca::core::text::escape(r.policy.as_deref().unwrap_or("-")),
            r.status,
            r.code,
            sshca::core::text::escape(&r.reason)
        );
    }
    Ok(())
}

fn parse_time(flag: &str, s: &str) -> Result<u64> {
    let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        invalid(format!(
            "{flag} {s:?}: not an RFC 3339 time (2026-01-31T12:00:00Z): {e}"
        ))
    })?;
    u64::try_from(t.unix_timestamp()).map_err(|_| invalid(format!("{flag} {s:?}: before 1970")))
}

/// Every audit row, oldest first, page by page.
async fn each_row(store: &dyn Store, mut f: impl FnMut(AuditRow) -> Result<bool>) -> Result<()> {
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, PAGE).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.id;
        for r in rows {
            if !f(r)? {
                return Ok(());
            }
        }
    }
}

/// The `chain_head` lines of an export.
fn heads_of_export(path: &Path) -> Result<Vec<ChainHead>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("cannot read the export", path, &e))?;
    let mut heads = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| invalid(format!("{}: a line is not JSON: {e}", path.display())))?;
        if v["type"] == "chain_head" {
            heads.push(
                serde_json::from_value(v).map_err(|e| {
                    invalid(format!("{}: a bad chain_head line: {e}", path.display()))
                })?,
            );
        }
    }
    Ok(heads)
}

async fn verify(
    store: &StoreArg,
    heads: &[String],
    heads_from: Option<&Path>,
    config: &Path,
) -> Result<ExitCode> {
    let mut expected = Vec::new();
    for h in heads {
        expected.push(h.parse::<ChainHead>().map_err(invalid)?);
    }
    if let Some(p) = heads_from {
        expected.extend(heads_of_export(p)?);
    }
    let s = open_store(store, config).await?;
    let mut v = Verifier::new(expected);
    let mut broken = None;
    each_row(&*s, |r| match v.push(&r) {
        Ok(()) => Ok(true),
        Err(b) => {
            broken = Some(b);
            Ok(false)
        }
    })
    .await?;
    let result = match broken {
        Some(b) => Err(b),
        None => v.finish(),
    };
    match result {
        Ok(report) => {
            println!(
                "{}: {} audit rows, {} chain(s) intact{}",
                s.describe(),
                report.rows,
                report.heads.len(),
                if report.unchained > 0 {
                    format!(" ({} rows from before the chains)", report.unchained)
                } else {
                    String::new()
                }
            );
            for h in &report.heads {
                println!("head {h}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            eprintln!("{}: broken: {b}", s.describe());
            Ok(ExitCode::from(1))
        }
    }
}

async fn export(
    store: &dyn Store,
    since: u64,
    until: u64,
    sign_with: &str,
    output: &Path,
) -> Result<()> {
    // Opened first: a key that does not open leaves no file behind.
    let signer = sshca::default_registry()
        .open(&crate::keyref::ca_uri(sign_with))
        .await?;
    let mut out = String::new();
    let mut count = 0u64;
    let mut bad = None;
    each_row(store, |r| {
        if (since..until).contains(&r.event.at) {
            let line = match r.body {
                Some(b) => b,
                None => match event_json(&r.event) {
                    Ok(j) => j,
                    Err(e) => {
                        bad = Some(e);
                        return Ok(false);
                    }
                },
            };
            out.push_str(&line);
            out.push('\n');
            count += 1;
        }
        Ok(true)
    })
    .await?;
    if let Some(e) = bad {
        return Err(Error::new(ErrorKind::Internal, "cannot encode an event").with_source(e));
    }
    let now = crate::output::now();
    for h in store.audit_heads().await? {
        out.push_str(&h.line(now));
        out.push('\n');
    }
    let sig = signer
        .sign_sshsig(AUDIT_NAMESPACE, HashAlg::Sha512, out.as_bytes())
        .await?;
    let sig_path = PathBuf::from(format!("{}.sig", output.display()));
    crate::files::write_atomic(output, out.as_bytes())?;
    crate::files::write_atomic(&sig_path, crate::sshsig::armour(&sig)?.as_bytes())?;
    eprintln!(
        "{count} events written to {}, signature {} (namespace {AUDIT_NAMESPACE})",
        output.display(),
        sig_path.display()
    );
    Ok(())
}
