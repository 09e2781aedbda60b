//! `sshca expires`: for renewal jobs, whether a certificate has expired or
//! will within a duration.

use std::process::ExitCode;

use clap::Args;
use sshca::signer::Result;

use crate::output::{human, invalid, now, read_cert};

/// Arguments of `sshca expires`.
#[derive(Args, Debug)]
pub struct ExpiresArgs {
    /// A duration: seconds, `30d`, `1.5h`, `1h30m` (default 0).
    #[arg(long, default_value = "0")]
    pub within: String,
    /// Certificate file (`-` for stdin).
    pub cert: String,
}

/// `sshca expires`.
pub fn run(a: ExpiresArgs) -> Result<ExitCode> {
    let (cert, within) = (a.cert.as_str(), a.within.as_str());
    let c = read_cert(cert)?;
    let within =
        sshca::core::validity::parse_ttl(within).map_err(|e| invalid(format!("--within: {e}")))?;
    let now = now();
    let before = c.valid_before();
    if before == u64::MAX {
        println!("{cert}: valid forever");
        return Ok(ExitCode::from(1));
    }
    if now >= before {
        println!(
            "{cert}: expired {} ago (valid before {})",
            human(now - before),
            sshca::core::validity::format_time(before)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let left = before - now;
    println!(
        "{cert}: expires in {} (valid before {})",
        human(left),
        sshca::core::validity::format_time(before)
    );
    Ok(if left <= within {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
