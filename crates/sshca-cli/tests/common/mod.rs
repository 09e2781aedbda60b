//! Helpers shared by the CLI integration tests: the `sshca` binary of this
//! package, and the test environment of sshca-testkit.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub use sshca_testkit::cli::*;

pub fn sshca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sshca"))
}

/// What `sshca inspect --json` says, in the shape of [`KeygenView`].
pub fn sshca_view(cert: &Path) -> KeygenView {
    let out = run(sshca().arg("inspect").arg("--json").arg(cert));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |k: &str| j[k].as_str().unwrap().to_owned();
    let va = j["valid_after"].as_u64().unwrap();
    let vb = j["valid_before"].as_u64().unwrap();
    let valid = sshca_core::validity::describe(va, vb);
    let opts = |k: &str| -> BTreeMap<String, String> {
        j[k].as_object()
            .unwrap()
            .iter()
            .map(|(n, v)| {
                let v = v.as_str().unwrap();
                // ssh-keygen prints values of known options only.
                let shown = match n.as_str() {
                    "force-command" | "source-address" => v.to_owned(),
                    _ if v.is_empty() => String::new(),
                    _ => "<?>".to_owned(),
                };
                (n.clone(), shown)
            })
            .collect()
    };
    KeygenView {
        key_type: s("key_type"),
        cert_type: s("type"),
        public_key: s("public_key"),
        signing_ca: s("signing_ca"),
        signature_algorithm: s("signature_algorithm"),
        key_id: s("key_id"),
        serial: j["serial"].as_u64().unwrap().to_string(),
        valid,
        principals: j["principals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect(),
        critical_options: opts("critical_options"),
        extensions: opts("extensions"),
    }
}
