//! `sshca certs`: the record the signing service keeps
//! (read from its store, without the service).

use std::path::Path;

use clap::{Args, Subcommand};
use sshca::config::Config;
use sshca::signer::Result;
use sshca_store::{CertQuery, IssuedCert};

use crate::output::to_json;

/// Which store, and how to print.
#[derive(Args, Debug)]
pub struct StoreArg {
    /// Store URL (default: the config's `[server] store`, or
    /// sqlite:<data_dir>/sshca.db).
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Issued certificates, newest first.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Only this serial.
        #[arg(long)]
        serial: Option<u64>,
        /// Only this key id.
        #[arg(long)]
        key_id: Option<String>,
        /// Only certificates naming this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only certificates asked for by this identity.
        #[arg(long)]
        requester: Option<String>,
        /// At most this many (default 100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One certificate by serial: its record and its certificate line.
    Show {
        #[command(flatten)]
        store: StoreArg,
        /// Serial number.
        serial: u64,
    },
}

pub(crate) async fn open_store(
    arg: &StoreArg,
    config: &Path,
) -> Result<std::sync::Arc<dyn sshca_store::Store>> {
    match &arg.store {
        Some(u) => sshca_store::open(u, &Default::default()).await,
        None => sshca_authority::open_store(None, &Config::load(config)?).await,
    }
}

fn print_rows(rows: &[IssuedCert]) {
    println!(
        "{:<20}  {:<4}  {:<24}  {:<24}  {:<20}  {:<12}  VALID UNTIL",
        "SERIAL", "TYPE", "KEY ID", "PRINCIPALS", "REQUESTER", "POLICY"
    );
    for r in rows {
        println!(
            "{:<20}  {:<4}  {:<24}  {:<24}  {:<20}  {:<12}  {}",
            r.serial,
            r.cert_type,
            sshca::core::text::escape(&r.key_id),
            sshca::core::text::escape(&r.principals.join(",")),
            sshca::core::text::escape(&r.requester),
            r.policy,
            sshca::core::validity::describe(r.valid_after, r.valid_before)
        );
    }
}

/// `sshca certs`.
pub async fn certs(cmd: CertsCmd, config: &Path) -> Result<()> {
    match cmd {
        CertsCmd::List {
            store,
            serial,
            key_id,
            principal,
            requester,
            limit,
        } => {
            let s = open_store(&store, config).await?;
            let rows = s
                .certs(&CertQuery {
                    serial,
                    key_id,
                    principal,
                    requester,
                    limit,
                    ..Default::default()
                })
                .await?;
            if store.json {
                println!("{}", to_json(&rows)?);
            } else {
                print_rows(&rows);
            }
        }
        CertsCmd::Show { store, serial } => {
            let s = open_store(&store, config).await?;
            let rows = s
                .certs(&CertQuery {
                    serial: Some(serial),
                    ..Default::default()
                })
                .await?;
            if rows.is_empty() {
                return Err(sshca::signer::Error::new(
                    sshca::signer::ErrorKind::NotFound,
                    format!("no certificate with serial {serial} in {}", s.describe()),
                ));
            }
            if store.json {
                println!("{}", to_json(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "serial: {}\nca: {}\ntype: {}\nkey id: {}\nprincipals: {}\nvalid: {}\n\
                         subject: {}\nrequester: {}\npolicy: {}\nissued at: {}\n{}",
                        r.serial,
                        r.ca_fingerprint,
                        r.cert_type,
                        sshca::core::text::escape(&r.key_id),
                        sshca::core::text::escape(&r.principals.join(",")),
                        sshca::core::validity::describe(r.valid_after, r.valid_before),
                        r.subject_fingerprint,
                        sshca::core::text::escape(&r.requester),
                        r.policy,
                        r.issued_at,
                        r.certificate
                    );
                }
            }
        }
    }
    Ok(())
}
