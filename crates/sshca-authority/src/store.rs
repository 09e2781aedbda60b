//! The store a config names, for the service and the offline commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sshca::config::Config;
use sshca::signer::{Error, ErrorKind, Result};
use sshca_store::{Store, StoreOptions};

/// The two fields of `[server]` that say where the store is (the service
/// parses the rest of the table).
#[derive(Deserialize)]
struct StoreFields {
    store: Option<String>,
    data_dir: Option<PathBuf>,
}

fn invalid(cfg: &Config, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: [server]: {what}", cfg.path.display()),
    )
}

fn fields(cfg: &Config) -> Result<Option<StoreFields>> {
    cfg.server
        .clone()
        .map(StoreFields::deserialize)
        .transpose()
        .map_err(|e| invalid(cfg, e.message()))
}

/// Whether the config says where a store is (`[server] store` or
/// `data_dir`).
pub fn has_store(cfg: &Config) -> Result<bool> {
    Ok(fields(cfg)?.is_some_and(|f| f.store.is_some() || f.data_dir.is_some()))
}

/// The store a config names: `[server] store`, else
/// `sqlite:<data_dir>/sshca.db` (`data_dir` relative to the config file).
pub fn store_url(cfg: &Config) -> Result<String> {
    let f = fields(cfg)?;
    match f.as_ref().map(|f| (&f.store, &f.data_dir)) {
        Some((Some(url), _)) => Ok(url.clone()),
        Some((None, Some(dir))) => {
            let dir = if dir.is_relative() {
                cfg.path.parent().unwrap_or(Path::new("")).join(dir)
            } else {
                dir.clone()
            };
            Ok(format!("sqlite:{}", dir.join("sshca.db").display()))
        }
        _ => Err(invalid(
            cfg,
            "set `data_dir` (the store defaults to sqlite:<data_dir>/sshca.db) or `store`",
        )),
    }
}

/// Opens the store `url`, else the one the config names.
pub async fn open_store(url: Option<&str>, cfg: &Config) -> Result<Arc<dyn Store>> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => store_url(cfg)?,
    };
    sshca_store::open(&url, &StoreOptions::default()).await
}
