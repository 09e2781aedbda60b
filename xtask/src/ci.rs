//! `cargo xtask ci`: format, clippy, slim builds, tests, rustdoc.

use std::process::Command;

use crate::util::*;

pub fn ci() -> Result<()> {
    run("rustfmt check", cargo().args(["fmt", "--all", "--check"]))?;
    run(
        "rustfmt check (out-of-tree backend example)",
        cargo()
            .args(["fmt", "--check", "--manifest-path"])
            .arg(crate::util::root().join("examples/out-of-tree-backend/Cargo.toml")),
    )?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Slim builds of the CLI and the lean library facade compile on their own.
    // (aws and azure only add an SDK; gcp and ekm each gate commands.)
    for features in ["local", "local,store", "gcp", "ekm"] {
        run(
            &format!("slim sshca-cli ({features})"),
            cargo().args([
                "check",
                "--quiet",
                "-p",
                "sshca-cli",
                "--no-default-features",
                "--features",
                features,
            ]),
        )?;
    }
    run(
        "lean sshca",
        cargo().args(["check", "--quiet", "-p", "sshca"]),
    )?;
    crate::slim::check()?;
    let (mut passed, mut failed, mut ignored) =
        test_counted(cargo().args(["test", "--workspace", "--all-features"]))?;
    // The out-of-tree backend example: its own workspace, built against
    // sshca-signer's public API, running the conformance suite.
    let example = crate::util::root().join("examples/out-of-tree-backend/Cargo.toml");
    run(
        "out-of-tree backend example: clippy",
        cargo()
            .arg("clippy")
            .arg("--manifest-path")
            .arg(&example)
            .args(["--all-targets", "--", "-D", "warnings"]),
    )?;
    let (p, f, i) = test_counted(cargo().arg("test").arg("--manifest-path").arg(&example))?;
    (passed, failed, ignored) = (passed + p, failed + f, ignored + i);
    run(
        "rustdoc",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("xtask: ci passed");
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    Ok(())
}

/// Runs `cargo test`, passing its output through, and totals the
/// `test result:` lines.
fn test_counted(cmd: &mut Command) -> Result<(u64, u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: tests");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("tests: cannot start cargo test: {e}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut it = part.split_whitespace();
                    if let (Some(n), Some(what)) = (it.next(), it.next()) {
                        let n: u64 = n.parse().unwrap_or(0);
                        match what {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            "ignored" => ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let st = child.wait().map_err(|e| format!("tests: {e}"))?;
    if !st.success() {
        println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
        return Err(format!("tests failed ({st})"));
    }
    Ok((passed, failed, ignored))
}
