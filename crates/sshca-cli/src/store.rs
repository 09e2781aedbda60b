//! `sshca store`: bring a store's schema up to date, and copy one store
//! into another (from one SQLite replica to a PostgreSQL database that
//! several replicas share).

use std::path::Path;

use clap::Subcommand;
use sshca::config::Config;
use sshca::signer::{Error, ErrorKind, Result};
use sshca_store::{Recorded, StoreOptions};

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Create the tables, or bring them up to date (as `sshca serve` does
    /// when it starts).
    Migrate {
        /// Store URL (default: the config's `[server] store`).
        #[arg(long)]
        store: Option<String>,
    },
    /// Copy every certificate, audit row and revocation of one store into
    /// another, empty, store, in their order (KRL versions too).
    Copy {
        /// The store to read.
        #[arg(long)]
        from: String,
        /// The store to write (must hold no rows yet).
        #[arg(long)]
        to: String,
    },
}

/// Opens the store a command names with `--store URL`, else the config's
/// (`[server] store`, or `sqlite:<data_dir>/sshca.db`).
const PAGE: u32 = 1000;

/// `sshca store`.
pub async fn run(cmd: StoreCmd, config: &Path) -> Result<()> {
    match cmd {
        StoreCmd::Migrate { store } => {
            let s = match store {
                Some(u) => sshca_store::open(&u, &StoreOptions::default()).await?,
                None => sshca_authority::open_store(None, &Config::load(config)?).await?,
            };
            println!("{}: schema up to date", s.describe());
            Ok(())
        }
        StoreCmd::Copy { from, to } => {
            let src = sshca_store::open(&from, &StoreOptions::default()).await?;
            let dst = sshca_store::open(&to, &StoreOptions::default()).await?;
            if !dst.certs_after(0, 1).await?.is_empty()
                || !dst.audit_after(0, 1).await?.is_empty()
                || !dst.revocations(None).await?.is_empty()
            {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is not empty: copy into a store that holds no rows",
                        dst.describe()
                    ),
                ));
            }
            let (mut certs, mut events) = (0usize, 0usize);
            let mut after = 0;
            loop {
                let page = src.certs_after(after, PAGE).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                let rows: Vec<_> = page.into_iter().map(|(_, c)| c).collect();
                let (recorded, _) = dst.import(&rows, &[]).await?;
                if let Some(i) = recorded.iter().position(|r| *r == Recorded::SerialTaken) {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "{}: CA {} serial {} is there twice",
                            src.describe(),
                            rows[i].ca_fingerprint,
                            rows[i].serial
                        ),
                    ));
                }
                certs += rows.len();
            }
            let mut after = 0;
            loop {
                // Rows keep their JSON and chain links: the copy verifies
                // as the original does.
                let rows = src.audit_rows(after, PAGE).await?;
                let Some(last) = rows.last() else { break };
                after = last.id;
                events += dst.import(&[], &rows).await?.1;
            }
            let revocations = src.revocations(None).await?;
            for r in &revocations {
                dst.revoke(r).await?;
            }
            // Join tokens not yet used up go along (their hashes only).
            let joins = src.join_tokens().await?;
            for t in &joins {
                dst.add_join_token(t).await?;
            }
            // Instances that joined stay joined (each joins once).
            let instances = src.joined_instances().await?;
            for i in &instances {
                dst.claim_instance(&i.join, &i.instance, i.enrolled_at)
                    .await?;
            }
            // KRLs built from the copy keep counting up from the source's.
            for (ca, version) in src.krl_versions().await? {
                dst.next_krl_version(&ca, version).await?;
            }
            println!(
                "copied {certs} certificates, {events} audit rows, {} revocations, {} join tokens and {} joined instances from {} to {}",
                revocations.len(),
                joins.len(),
                instances.len(),
                src.describe(),
                dst.describe()
            );
            Ok(())
        }
    }
}
