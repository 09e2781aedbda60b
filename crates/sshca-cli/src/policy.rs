//! `sshca policy`: the signing policies of the config file.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use sshca::config::{Config, EffectivePolicy};
use sshca::signer::Result;

use crate::output::{internal, to_json};

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print a policy's effective values.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Policy name.
        name: String,
    },
    /// Validate the config (the service's tables too) and print each
    /// policy's effective values; warn about each policy whose behaviour
    /// the safer defaults changed.
    Check,
}

/// `sshca policy`.
pub fn run(cmd: PolicyCmd, config: &Path) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    match cmd {
        PolicyCmd::Show { json, name } => {
            let (entry, ca) = cfg.policy(&name)?;
            print_policy(&EffectivePolicy::new(entry, ca), json)?;
        }
        PolicyCmd::Check => {
            // The service's own tables too ([server], [token.*], [oidc.*]).
            #[cfg(feature = "server")]
            sshca_server::ServiceConfig::from_config(&cfg)?;
            for (name, what) in cfg.changed_defaults() {
                eprintln!("sshca: warning: policy `{name}`: {what}");
            }
            for entry in cfg.policies.values() {
                let (_, ca) = cfg.policy(&entry.policy.name)?;
                print_policy(&EffectivePolicy::new(entry, ca), false)?;
                println!();
            }
            println!(
                "{}: ok ({} CAs, {} policies)",
                config.display(),
                cfg.cas.len(),
                cfg.policies.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_policy(p: &EffectivePolicy<'_>, json: bool) -> Result<()> {
    if json {
        println!("{}", to_json(p)?);
        return Ok(());
    }
    let v = serde_json::to_value(p).map_err(|e| internal("cannot encode JSON").with_source(e))?;
    println!("[policy.{}]", p.policy.name);
    if let serde_json::Value::Object(map) = v {
        for (k, val) in map {
            if k != "name" {
                println!("{k} = {val}");
            }
        }
    }
    Ok(())
}
