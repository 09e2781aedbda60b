//! `cargo xtask fuzz`: every cargo-fuzz target.

use std::env;
use std::process::Command;

use crate::util::*;

/// The fuzz targets: the `[[bin]]` entries of `fuzz/Cargo.toml`, so a new
/// target is run as soon as it is declared there.
fn targets() -> Result<Vec<String>> {
    let path = root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: Vec<String> = manifest
        .get("bin")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        return Err(format!("{}: no [[bin]] fuzz targets", path.display()));
    }
    Ok(names)
}

/// Runs every fuzz target for `secs` seconds. New inputs go to a working
/// corpus under the target dir (seeded from `fuzz/corpus`), so the committed
/// seeds stay small; a crash fails the task and names the artifact.
pub fn fuzz(secs: u64) -> Result<()> {
    let have = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        run(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let work = target_dir().join("fuzz-corpus");
    let fuzz_target = target_dir().join("fuzz");
    let mut report = Vec::new();
    for t in targets()? {
        let t = t.as_str();
        let dir = work.join(t);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let seeds = root().join("fuzz/corpus").join(t);
        let artifacts = target_dir().join("fuzz-artifacts").join(t);
        std::fs::create_dir_all(&artifacts).map_err(|e| format!("{}: {e}", artifacts.display()))?;
        let out = cargo()
            .current_dir(root().join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &fuzz_target)
            .args(["fuzz", "run", t])
            .arg(&dir)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .output()
            .map_err(|e| format!("cargo fuzz run {t}: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let runs = err
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(' ').next()))
            .unwrap_or("?")
            .to_owned();
        if !out.status.success() {
            eprintln!("{err}");
            return Err(format!(
                "fuzz target {t} found a failure; see {}",
                artifacts.display()
            ));
        }
        report.push((t.to_owned(), runs));
    }
    println!("{:<16}  {:>12}  findings", "target", "executions");
    for (t, runs) in report {
        println!("{t:<16}  {runs:>12}  0");
    }
    Ok(())
}
