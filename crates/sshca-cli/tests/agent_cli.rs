//! `sshca agent` with real OpenSSH and git: keys in files and in the
//! emulated AWS KMS listed by ssh-add; `ssh-keygen -Y sign` through the
//! agent; `ssh-keygen -s CA.pub -U` with the CA in the agent, accepted by
//! sshd; `ssh` logging in with a KMS-held key and its certificate (RSA with
//! rsa-sha2-256 and rsa-sha2-512); `git commit -S` and `git verify-commit`;
//! adding and removing keys refused; lock and unlock; SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

struct Agent {
    socket: PathBuf,
    pid: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid]).status();
    }
}

fn start_agent(dir: &Path, args: &[String]) -> Agent {
    let mut c = sshca();
    kms_env(&mut c, dir).arg("agent").args(args);
    let out = run(&mut c);
    let text = String::from_utf8(out.stdout).unwrap();
    let var = |name: &str| {
        text.split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    Agent {
        socket: PathBuf::from(var("SSH_AUTH_SOCK")),
        pid: var("SSH_AGENT_PID"),
    }
}

fn with_agent(cmd: &mut Command, agent: &Agent) -> Output {
    cmd.env("SSH_AUTH_SOCK", &agent.socket)
        .env_remove("SSH_ASKPASS")
        .output()
        .unwrap()
}

fn pubkey_of(dir: &Path, uri: &str) -> String {
    let mut c = sshca();
    kms_env(&mut c, dir);
    String::from_utf8(run(c.arg("pubkey").arg(uri)).stdout)
        .unwrap()
        .trim()
        .to_owned()
}

/// `ssh` to the test sshd with only the agent's keys.
fn ssh_agent_login(
    sshd: &Sshd,
    dir: &Path,
    agent: &Agent,
    known_hosts: &Path,
    algs: Option<&str>,
) -> Output {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-p", &sshd.port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "CheckHostIP=no",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-o")
        .arg(format!("IdentityAgent={}", agent.socket.display()))
        .args(["-o", "IdentityFile=none"]);
    if let Some(a) = algs {
        c.arg("-o").arg(format!("PubkeyAcceptedAlgorithms={a}"));
    }
    c.arg(format!("{}@127.0.0.1", user()))
        .arg("echo agent-login-ok")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn openssh_and_git_use_kms_keys_through_the_agent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(kms_emulator::Emulator::start(
            kms_emulator::Config::default(),
        ))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let me = user();
    let aws = |spec: &str| {
        let id = emu.create_aws_key(spec, "SIGN_VERIFY").unwrap();
        format!("awskms:{id}?endpoint={}", emu.endpoints().aws)
    };
    let ca_uri = aws("ECC_NIST_P256");
    let user_uri = aws("ECC_NIST_EDWARDS25519");
    let rsa_uri = aws("RSA_3072");
    let file_key = keygen(dir, "file_key", "ed25519", None);
    let gcp_uri = {
        let v = emu
            .create_gcp_key(
                "projects/p/locations/global/keyRings/r/cryptoKeys/agent",
                "EC_SIGN_P384_SHA384",
            )
            .unwrap();
        format!("gcpkms:{v}?endpoint={}", emu.endpoints().gcp)
    };
    let azure_uri = {
        let kid = emu.create_azure_key("agent", "RSA", "2048").unwrap();
        format!(
            "azurekv:{kid}?ca-cert={}",
            emu.endpoints().azure_ca_cert.display()
        )
    };

    // The user keys' certificates, from a CA that sshd trusts.
    let user_ca = keygen(dir, "user_ca", "ed25519", None);
    let mut certs = Vec::new();
    for (name, uri) in [("kms_user", &user_uri), ("kms_rsa", &rsa_uri)] {
        let p = dir.join(format!("{name}.pub"));
        std::fs::write(&p, format!("{}\n", pubkey_of(dir, uri))).unwrap();
        run(sshca()
            .args(["sign", "-I", name, "-n", &me, "-V", "-5m:+1h", "--ca"])
            .arg(format!("file:{}", user_ca.display()))
            .arg(&p));
        certs.push(cert_of(&p));
    }
    let mut args: Vec<String> = Vec::new();
    for uri in [&ca_uri, &user_uri, &rsa_uri, &gcp_uri, &azure_uri] {
        args.extend(["--key".into(), uri.clone()]);
    }
    args.extend([
        "--key".into(),
        format!("file:{}?comment=the-file-key", file_key.display()),
    ]);
    for c in &certs {
        args.extend(["--cert".into(), c.display().to_string()]);
    }
    let agent = start_agent(dir, &args);
    let meta = std::fs::metadata(&agent.socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let parent = std::fs::metadata(agent.socket.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);

    // ssh-add lists every key (and the certificates), with comments.
    let out = with_agent(Command::new("ssh-add").arg("-L"), &agent);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), 8, "{listed}");
    assert!(listed.contains("the-file-key") && listed.contains(&ca_uri));
    assert!(listed.contains(
        &pubkey_of(dir, &user_uri)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    ));
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("-cert-v01@openssh.com"))
            .count(),
        2
    );

    // ssh-keygen -Y sign through the agent, for each key.
    let msg = dir.join("msg");
    std::fs::write(&msg, "signed through the agent\n").unwrap();
    for uri in [&ca_uri, &user_uri, &rsa_uri, &gcp_uri, &azure_uri] {
        let pub_line = pubkey_of(dir, uri);
        let p = dir.join("signer.pub");
        std::fs::write(&p, format!("{pub_line}\n")).unwrap();
        let _ = std::fs::remove_file(dir.join("msg.sig"));
        let out = with_agent(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(&p)
                .arg(&msg),
            &agent,
        );
        assert!(
            out.status.success(),
            "{uri}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("allowed"), format!("signer {pub_line}\n")).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(dir.join("allowed"))
            .args(["-I", "signer", "-n", "file", "-s"])
            .arg(dir.join("msg.sig"))
            .stdin(std::fs::File::open(&msg).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{uri}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // ssh-keygen -s CA.pub -U: the CA key in the agent (in AWS KMS) signs
    // a user certificate that sshd accepts.
    let ca_pub = dir.join("kms_ca.pub");
    std::fs::write(&ca_pub, format!("{}\n", pubkey_of(dir, &ca_uri))).unwrap();
    let trusted = dir.join("trusted_user_cas");
    std::fs::write(
        &trusted,
        format!(
            "{}{}\n",
            std::fs::read_to_string(&ca_pub).unwrap(),
            std::fs::read_to_string(user_ca.with_extension("pub"))
                .unwrap()
                .trim()
        ),
    )
    .unwrap();
    // Plain keys log in through authorized_keys: the KMS-held P-384 key.
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{}\n", pubkey_of(dir, &gcp_uri))).unwrap();
    let (sshd, known_hosts) = sshd_trusting_with(
        dir,
        &trusted,
        &format!("AuthorizedKeysFile {}\n", authorized.display()),
    );
    let login_key = keygen(dir, "id_login", "ed25519", None);
    let out = with_agent(
        Command::new("ssh-keygen")
            .args(["-s"])
            .arg(&ca_pub)
            .args(["-U", "-I", "via-agent", "-n", &me, "-V", "-5m:+1h"])
            .arg(login_key.with_extension("pub")),
        &agent,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ssh(
        &sshd,
        dir,
        &login_key,
        &cert_of(&login_key.with_extension("pub")),
        &known_hosts,
        "echo ca-in-agent-ok",
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );

    // ssh with the KMS-held user keys and their certificates, from the
    // agent alone; RSA with rsa-sha2-256 and with rsa-sha2-512.
    for algs in [
        None,
        Some("rsa-sha2-256-cert-v01@openssh.com"),
        Some("rsa-sha2-512-cert-v01@openssh.com"),
    ] {
        let out = ssh_agent_login(&sshd, dir, &agent, &known_hosts, algs);
        assert!(
            out.status.success(),
            "{algs:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "agent-login-ok"
        );
    }
    let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    assert!(
        log.contains("RSA-CERT") || log.contains("rsa-sha2"),
        "{log}"
    );
    // A plain KMS-held key (no certificate) through authorized_keys.
    let out = ssh_agent_login(
        &sshd,
        dir,
        &agent,
        &known_hosts,
        Some("ecdsa-sha2-nistp384"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    assert!(
        log.contains("Accepted publickey") && log.contains("ECDSA "),
        "{log}"
    );

    // git commit -S and git verify-commit with the KMS Ed25519 key.
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let signing = pubkey_of(dir, &user_uri);
    std::fs::write(
        dir.join("git_allowed"),
        format!("dev@example.com {signing}\n"),
    )
    .unwrap();
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.current_dir(&repo)
            .env("HOME", dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "user.name=Dev",
                "-c",
                "user.email=dev@example.com",
                "-c",
                "gpg.format=ssh",
            ])
            .arg("-c")
            .arg(format!("user.signingkey=key::{signing}"))
            .arg("-c")
            .arg(format!(
                "gpg.ssh.allowedSignersFile={}",
                dir.join("git_allowed").display()
            ))
            .args(args);
        with_agent(&mut c, &agent)
    };
    assert!(git(&["init", "-q"]).status.success());
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    assert!(git(&["add", "README"]).status.success());
    let out = git(&["commit", "-q", "-S", "-m", "signed by a KMS key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = git(&["verify-commit", "HEAD"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Good \"git\" signature for dev@example.com")
    );

    // Adding and removing keys is refused.
    let out = with_agent(Command::new("ssh-add").arg(&file_key), &agent);
    assert!(!out.status.success());
    let out = with_agent(Command::new("ssh-add").arg("-D"), &agent);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(with_agent(Command::new("ssh-add").arg("-L"), &agent).stdout)
            .unwrap()
            .lines()
            .count(),
        8
    );

    // Lock and unlock (the passphrase from an askpass program).
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho lock-passphrase\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock = |flag: &str| {
        Command::new("ssh-add")
            .arg(flag)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    assert!(lock("-x").status.success());
    let out = with_agent(Command::new("ssh-add").arg("-L"), &agent);
    assert!(!out.status.success(), "a locked agent listed keys");
    let _ = std::fs::remove_file(dir.join("msg.sig"));
    let p = dir.join("signer.pub");
    let out = with_agent(
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(&p)
            .arg(&msg),
        &agent,
    );
    assert!(!out.status.success(), "a locked agent signed");
    assert!(lock("-X").status.success());
    assert_eq!(
        String::from_utf8(with_agent(Command::new("ssh-add").arg("-L"), &agent).stdout)
            .unwrap()
            .lines()
            .count(),
        8
    );

    // SIGTERM: the agent exits and removes its socket.
    let socket = agent.socket.clone();
    drop(agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the socket outlived the agent"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!socket.parent().unwrap().exists());
}

#[test]
fn bad_keys_and_certificates_are_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = keygen(dir, "k", "ed25519", None);
    let other = keygen(dir, "o", "ed25519", None);
    let ca = keygen(dir, "ca", "ed25519", None);
    run(sshca()
        .args(["sign", "-I", "x", "-V", "+1h", "--ca"])
        .arg(format!("file:{}", ca.display()))
        .arg(other.with_extension("pub")));
    let out = sshca()
        .args(["agent", "-D", "-a"])
        .arg(dir.join("s"))
        .arg("--key")
        .arg(format!("file:{}", key.display()))
        .arg("--cert")
        .arg(cert_of(&other.with_extension("pub")))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certifies none of the --key keys"));
    let out = sshca()
        .args(["agent", "-D", "-a"])
        .arg(dir.join("s"))
        .args(["--key", "file:/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.join("s").exists());
}

#[test]
fn confirm_decides_each_signature() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = keygen(dir, "k", "ed25519", None);
    let msg = dir.join("msg");
    std::fs::write(&msg, "x").unwrap();
    let gate = dir.join("allow");
    // The command sees the key's comment and allows while the file exists.
    let cmd = format!(
        "test \"$SSHCA_AGENT_KEY\" = gated && test -e {}",
        gate.display()
    );
    let agent = start_agent(
        dir,
        &[
            "--key".into(),
            format!("file:{}?comment=gated", key.display()),
            "--confirm".into(),
            cmd,
        ],
    );
    let sign = || {
        let _ = std::fs::remove_file(dir.join("msg.sig"));
        with_agent(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(key.with_extension("pub"))
                .arg(&msg),
            &agent,
        )
    };
    assert!(!sign().status.success(), "signed without confirmation");
    std::fs::write(&gate, "").unwrap();
    let out = sign();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_socket_is_private_and_other_users_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = keygen(dir, "k", "ed25519", None);
    let agent = start_agent(dir, &["--key".into(), format!("file:{}", key.display())]);
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let listed = with_agent(Command::new("ssh-add").arg("-L"), &agent);
    assert!(listed.status.success());
    let uid = String::from_utf8(run(Command::new("id").arg("-u")).stdout).unwrap();
    if uid.trim() != "0" {
        // Connecting as another user needs root (CI runs as root).
        eprintln!("not root: the peer check is exercised by the root run");
        return;
    }
    // Even with the socket opened to everyone, another user's connection
    // is closed unanswered (SO_PEERCRED), as OpenSSH's ssh-agent does.
    let open_dir = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    open_dir(dir);
    open_dir(agent.socket.parent().unwrap());
    std::fs::set_permissions(&agent.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let other = Command::new("runuser")
        .args(["-u", "nobody", "--", "ssh-add", "-L"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(
        !other.status.success(),
        "another user read the keys: {}",
        String::from_utf8_lossy(&other.stdout)
    );
    assert!(!String::from_utf8_lossy(&other.stdout).contains("ssh-ed25519"));
    // The owner still is.
    assert!(with_agent(Command::new("ssh-add").arg("-L"), &agent)
        .status
        .success());
}
