//! `sshca inspect`: a certificate's fields, like `ssh-keygen -L`, or JSON.

use std::process::ExitCode;

use clap::Args;
use sshca::signer::Result;

use crate::output::{cert_text, read_cert, to_json};

/// Arguments of `sshca inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Certificate file (`-` for stdin).
    pub cert: String,
}

/// `sshca inspect`.
pub fn run(a: InspectArgs) -> Result<ExitCode> {
    let InspectArgs { json, cert } = a;
    let c = read_cert(&cert)?;
    let info = crate::keyref::CertInfo::new(&c);
    if json {
        println!("{}", to_json(&info)?);
    } else {
        print!("{}", cert_text(&info, &cert, &c));
    }
    Ok(ExitCode::SUCCESS)
}
