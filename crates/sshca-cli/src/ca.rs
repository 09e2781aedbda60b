//! `sshca ca rotate NAME`: the first `next` key of `[ca.NAME]` becomes the
//! current one and the current one is retired, in the config file itself
//! (comments and layout kept, written atomically).
//!
//! The runbook (docs/revocation.md): add the new key to `next`, publish the
//! trust bundle (`sshca pubkey --all`) everywhere and wait until every host
//! trusts it, rotate, restart or reload the service, and drop the retired
//! key from the config once its certificates have expired.

use std::path::Path;

use clap::Subcommand;
use sshca::signer::{Error, ErrorKind, Result};
use toml_edit::{Array, DocumentMut, Item, Value};

use crate::output::invalid;

/// `sshca ca`.
#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Make the first `next` key of `[ca.NAME]` current and retire the
    /// current one (edits the config file).
    Rotate {
        /// The CA.
        name: String,
    },
}

/// `sshca ca`.
pub async fn run(cmd: CaCmd, config: &Path) -> Result<()> {
    match cmd {
        CaCmd::Rotate { name } => rotate(&name, config).await,
    }
}

fn strings(item: Option<&Item>, field: &str, ca: &str) -> Result<Vec<String>> {
    let Some(item) = item else {
        return Ok(Vec::new());
    };
    let arr = item
        .as_array()
        .ok_or_else(|| invalid(format!("ca `{ca}`: field `{field}`: not a list")))?;
    arr.iter()
        .map(|v| {
            v.as_str().map(str::to_owned).ok_or_else(|| {
                invalid(format!("ca `{ca}`: field `{field}`: not a list of strings"))
            })
        })
        .collect()
}

fn array(items: &[String]) -> Item {
    let mut a = Array::new();
    for i in items {
        a.push(i.as_str());
    }
    Item::Value(Value::Array(a))
}

async fn rotate(name: &str, config: &Path) -> Result<()> {
    // The whole config must be valid before and after.
    let cfg = sshca::config::Config::load(config)?;
    let entry = cfg.cas.get(name).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("no CA named `{name}` in {}", config.display()),
        )
    })?;
    let Some(new_uri) = entry.next.first() else {
        return Err(invalid(format!(
            "ca `{name}`: no `next` key to rotate to (add one, publish `sshca pubkey --all --ca {name}`, then rotate)"
        )));
    };
    // The new key must open (and its fingerprint becomes the pin when the
    // old key had one).
    let signer = sshca::default_registry()
        .open(new_uri)
        .await
        .map_err(|e| e.context(format!("ca `{name}`: the next key")))?;
    let new_fp = sshca::fingerprint(&signer.public_key().await?);

    let text = std::fs::read_to_string(config)
        .map_err(|e| Error::io("cannot read the config", config, &e))?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| invalid(format!("{}: {e}", config.display())))?;
    let table = doc
        .get_mut("ca")
        .and_then(|c| c.get_mut(name))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| invalid(format!("{}: no [ca.{name}] table", config.display())))?;
    let old_key = table
        .get("key")
        .and_then(Item::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("ca `{name}`: field `key` is not a string")))?;
    let mut next = strings(table.get("next"), "next", name)?;
    let mut retired = strings(table.get("retired"), "retired", name)?;
    let new_key = next.remove(0);
    retired.insert(0, old_key.clone());
    table.insert("key", toml_edit::value(new_key.as_str()));
    if table.get("pin").is_some() {
        table.insert("pin", toml_edit::value(new_fp.as_str()));
    }
    if next.is_empty() {
        table.remove("next");
    } else {
        table.insert("next", array(&next));
    }
    table.insert("retired", array(&retired));
    let out = doc.to_string();
    sshca::config::Config::parse(&out, config)
        .map_err(|e| e.context("the rotated config would not load"))?;
    crate::files::write_atomic(config, out.as_bytes())?;
    let now = crate::output::now();
    let event = sshca_store::AuditEvent {
        identity: Some(crate::output::local_user()),
        auth_source: Some("cli".into()),
        ca_fingerprint: Some(new_fp.clone()),
        status: 200,
        outcome: "allowed".into(),
        code: "ca_rotated".into(),
        reason: format!("ca `{name}`: current key is now {new_key}; {old_key} is retired"),
        ..sshca_store::AuditEvent::new("ca_rotate", &crate::output::cli_request_id(now), now)
    };
    // The rotation stands; a store that cannot take its event is said.
    let recorded = match sshca_authority::open_store(None, &cfg).await {
        Ok(store) => store.audit(&event).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        eprintln!(
            "warning: the rotation is done, but its audit event was not recorded: {}",
            e.report()
        );
    }
    println!(
        "ca `{name}`: current key is now {new_key} ({new_fp}); {old_key} is retired.\n\
         Restart `sshca serve` to sign with it; keep the retired key in the trust \
         bundle until its certificates expire."
    );
    Ok(())
}
