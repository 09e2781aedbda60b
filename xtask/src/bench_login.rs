//! `sshca login --check` as it runs before every `ssh` (a `Match exec`
//! line): the agent holding a certificate of a cached CA key, no network.
//! Its wall time per invocation against `ssh-add -l` (asking the same
//! agent for its keys, the least a check can do) in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench_runs::Stat;
use crate::util::*;

const SERVER: &str = "https://bench.example";
const INVOCATIONS: usize = 50;

/// Wall milliseconds of `sshca login --check` and of `ssh-add -l`, each
/// over [`INVOCATIONS`] invocations.
pub fn login_check(sshca: &Path) -> Result<(Stat, Stat)> {
    let dir = target_dir().join("bench-login-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let keygen = |args: &[&str], what: &str| {
        output(
            what,
            Command::new("ssh-keygen").current_dir(&dir).args(args),
        )
        .map(|_| ())
    };
    keygen(
        &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", "ca"],
        "ssh-keygen (CA)",
    )?;
    keygen(
        &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", "id"],
        "ssh-keygen (key)",
    )?;
    keygen(
        &[
            "-q", "-s", "ca", "-I", "bench", "-n", "alice", "-V", "-1m:+1h", "id.pub",
        ],
        "ssh-keygen -s",
    )?;
    // The CA keys `sshca login` caches for the server.
    let digest = output(
        "sha256sum",
        Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s '{SERVER}' | sha256sum")),
    )?;
    let name = digest.get(..16).ok_or("sha256sum printed nothing")?;
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("sshca")).map_err(|e| format!("{e}"))?;
    let ca = std::fs::read_to_string(dir.join("ca.pub")).map_err(|e| format!("ca.pub: {e}"))?;
    std::fs::write(
        state.join(format!("sshca/cas-{name}.pub")),
        format!("# CA keys of {SERVER} (sshca login)\n{ca}"),
    )
    .map_err(|e| format!("{e}"))?;
    let sock = dir.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("ssh-agent: {e}"))?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if Instant::now() > deadline {
                return Err("ssh-agent did not start".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        output(
            "ssh-add",
            Command::new("ssh-add")
                .current_dir(&dir)
                .arg("id")
                .env("SSH_AUTH_SOCK", &sock)
                .stderr(Stdio::null()),
        )?;
        let time = |cmd: &mut Command, what: &str| -> Result<Stat> {
            let mut ms = Vec::with_capacity(INVOCATIONS);
            for _ in 0..INVOCATIONS {
                let t = Instant::now();
                let st = cmd
                    .status()
                    .map_err(|e| format!("{what}: cannot start: {e}"))?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                if !st.success() {
                    return Err(format!("{what} failed ({st})"));
                }
            }
            Stat::of(&ms).ok_or_else(|| format!("{what}: no times"))
        };
        let ours = time(
            Command::new(sshca)
                .args(["login", "--server", SERVER, "--check"])
                .env("XDG_STATE_HOME", &state)
                .env("SSH_AUTH_SOCK", &sock)
                .stdout(Stdio::null()),
            "sshca login --check",
        )?;
        let theirs = time(
            Command::new("ssh-add")
                .arg("-l")
                .env("SSH_AUTH_SOCK", &sock)
                .stdout(Stdio::null()),
            "ssh-add -l",
        )?;
        Ok((ours, theirs))
    })();
    let _ = agent.kill();
    let _ = agent.wait();
    result
}
