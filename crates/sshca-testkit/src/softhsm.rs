//! SoftHSM2 tokens in a temporary directory (no root): a config file for
//! `SOFTHSM2_CONF`, tokens initialised with `softhsm2-util`, the user PIN in
//! a file for `pin-source=`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module Debian's `softhsm2` installs.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of every test token.
pub const USER_PIN: &str = "4711-user";

/// A SoftHSM2 token directory with its config.
pub struct SoftHsm {
    _dir: tempfile::TempDir,
    /// The directory holding `softhsm2.conf`, `tokens/` and `pin`.
    pub dir: PathBuf,
    /// The file `SOFTHSM2_CONF` must name.
    pub conf: PathBuf,
    /// A file holding [`USER_PIN`].
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// A fresh token directory with one initialised token per label. Panics
    /// (the test fails) when SoftHSM2 is not installed.
    pub fn new(labels: &[&str]) -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed ({MODULE} is missing): apt-get install softhsm2"
        );
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_owned();
        std::fs::create_dir(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        let pin_file = dir.join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
        let hsm = Self {
            _dir: d,
            dir,
            conf,
            pin_file,
        };
        for label in labels {
            hsm.init_token(label);
        }
        hsm
    }

    /// Initialises a token labelled `label` in the first free slot.
    pub fn init_token(&self, label: &str) {
        crate::cli::run(
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &self.conf)
                .args(["--init-token", "--free", "--label", label])
                .args(["--so-pin", "4711-so", "--pin", USER_PIN]),
        );
    }

    /// `pkcs11:token=TOKEN;object=OBJECT?module-path=...&pin-source=...`.
    pub fn uri(&self, token: &str, object: &str) -> String {
        format!(
            "pkcs11:token={token};object={object}?module-path={MODULE}&pin-source={}",
            self.pin_file.display()
        )
    }

    /// Points a command's SoftHSM2 at this directory.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("SOFTHSM2_CONF", &self.conf)
    }
}
