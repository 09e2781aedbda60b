//! What every task shares: paths, running cargo and commands.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A task's result; the error is the message printed.
pub type Result<T> = std::result::Result<T, String>;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// `cargo` as a shell starts it, for builds that should share what plain
/// `cargo build` invocations built: `cargo run` (which starts xtask) and
/// rustup set variables a nested cargo would fingerprint, so every
/// dependency would be built twice, once per way of starting cargo.
pub fn plain_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    for (name, _) in env::vars_os() {
        let name = name.to_string_lossy();
        let nested = name == "CARGO"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "RUSTUP_TOOLCHAIN"
                    | "RUSTUP_TOOLCHAIN_SOURCE"
                    | "RUST_RECURSION_COUNT"
            );
        if nested {
            c.env_remove(&*name);
        }
    }
    // The library paths cargo run added (its build directories) go.
    if let Some(paths) = env::var_os("LD_LIBRARY_PATH") {
        let target = target_dir();
        let kept: Vec<PathBuf> = env::split_paths(&paths)
            .filter(|p| !p.as_os_str().is_empty() && !p.starts_with(&target))
            .collect();
        if kept.is_empty() {
            c.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = env::join_paths(kept) {
            c.env("LD_LIBRARY_PATH", joined);
        }
    }
    c
}

pub fn run(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}");
    let st = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

pub fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
