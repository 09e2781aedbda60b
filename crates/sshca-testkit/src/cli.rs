//! The environment of command-line tests: keys made by ssh-keygen, its
//! `-L` listing parsed, a private sshd on 127.0.0.1 and ssh logins to it.
#![allow(missing_docs)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssh_key::public::{EcdsaPublicKey, KeyData, SkEcdsaSha2NistP256, SkEd25519};
use ssh_key::PublicKey;

/// Where `sshca sign` (like `ssh-keygen -s`) writes the certificate of KEY.
pub fn cert_of(key: &Path) -> PathBuf {
    let s = key.to_string_lossy();
    PathBuf::from(format!("{}-cert.pub", s.strip_suffix(".pub").unwrap_or(&s)))
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out
}

/// How many entries of `dir` have a name that `pick` accepts.
///
/// # Panics
/// When `dir` cannot be read.
pub fn count_entries(dir: &Path, pick: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| pick(&e.file_name().to_string_lossy()))
        .count()
}

/// How many temporary files sshca left in `dir` (names `.sshca-*`).
pub fn temp_leftovers(dir: &Path) -> usize {
    count_entries(dir, |n| n.starts_with(".sshca-"))
}

/// Generates a key with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, t: &str, bits: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-N", "", "-C", name, "-t", t, "-f"])
        .arg(&path);
    if let Some(b) = bits {
        c.args(["-b", b]);
    }
    run(&mut c);
    path
}

/// Writes security-key public keys (no FIDO device is needed to certify them).
pub fn sk_keys(dir: &Path) -> Vec<PathBuf> {
    let ed = keygen(dir, "for_sk_ed", "ed25519", None);
    let ec = keygen(dir, "for_sk_ec", "ecdsa", Some("256"));
    let edk = PublicKey::read_openssh_file(&ed.with_extension("pub")).unwrap();
    let eck = PublicKey::read_openssh_file(&ec.with_extension("pub")).unwrap();
    let sk_ed = KeyData::SkEd25519(SkEd25519::new(*edk.key_data().ed25519().unwrap(), "ssh:"));
    let EcdsaPublicKey::NistP256(point) = *eck.key_data().ecdsa().unwrap() else {
        panic!("not p256")
    };
    let sk_ec = KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(point, "ssh:"));
    let mut out = Vec::new();
    for (name, k) in [("sk_ed.pub", sk_ed), ("sk_ec.pub", sk_ec)] {
        let p = dir.join(name);
        std::fs::write(&p, PublicKey::new(k, name).to_openssh().unwrap() + "\n").unwrap();
        out.push(p);
    }
    out
}

/// Fields parsed from `ssh-keygen -L` output (run with TZ=UTC).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeygenView {
    pub key_type: String,
    pub cert_type: String,
    pub public_key: String,
    pub signing_ca: String,
    pub signature_algorithm: String,
    pub key_id: String,
    pub serial: String,
    pub valid: String,
    pub principals: Vec<String>,
    /// name -> value as printed (empty for flags)
    pub critical_options: BTreeMap<String, String>,
    pub extensions: BTreeMap<String, String>,
}

pub fn keygen_list(cert: &Path) -> KeygenView {
    let out = run(Command::new("ssh-keygen")
        .env("TZ", "UTC")
        .arg("-L")
        .arg("-f")
        .arg(cert));
    parse_list(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_list(text: &str) -> KeygenView {
    let mut v = KeygenView::default();
    let mut section = "";
    for line in text.lines().skip(1) {
        let t = line.trim();
        if line.starts_with("                ") {
            let (name, value) = t.split_once(' ').unwrap_or((t, ""));
            match section {
                "p" => v.principals.push(t.to_owned()),
                "c" => {
                    v.critical_options.insert(name.into(), value.into());
                }
                "e" => {
                    v.extensions.insert(name.into(), value.into());
                }
                _ => panic!("unexpected line {line}"),
            }
            continue;
        }
        let (k, val) = t.split_once(':').unwrap();
        let val = val.trim();
        match k {
            "Type" => {
                let mut it = val.split(' ');
                v.key_type = it.next().unwrap().into();
                v.cert_type = it.next().unwrap().into();
            }
            "Public key" => v.public_key = val.split(' ').nth(1).unwrap().into(),
            "Signing CA" => {
                let parts: Vec<&str> = val.split(' ').collect();
                v.signing_ca = parts[1].into();
                v.signature_algorithm = parts[3].trim_end_matches(')').into();
            }
            "Key ID" => v.key_id = val.trim_matches('"').into(),
            "Serial" => v.serial = val.into(),
            "Valid" => v.valid = val.into(),
            "Principals" => section = "p",
            "Critical Options" => section = "c",
            "Extensions" => section = "e",
            _ => panic!("unexpected key {k}"),
        }
    }
    v
}

/// Normalises ssh-keygen's display of unknown options to `<VALUE>` (our hex
/// of the raw data is not comparable to its dump), so both views compare.
pub fn normalise_unknown(v: &mut KeygenView) {
    for map in [&mut v.critical_options, &mut v.extensions] {
        for (_, val) in map.iter_mut() {
            if val == "UNKNOWN FLAG OPTION" {
                val.clear();
            } else if val.starts_with("UNKNOWN OPTION") {
                *val = "<?>".into();
            }
        }
    }
}

// ---- a real sshd on 127.0.0.1 ----

use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub child: Child,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_sshd(dir: &Path, user_ca_pub: &Path, host_key: &Path, host_cert: &Path) -> Sshd {
    start_sshd_with(dir, user_ca_pub, host_key, host_cert, "")
}

/// Like [`start_sshd`], with `extra` sshd_config lines first (sshd keeps the
/// first value of a keyword, so they override the defaults here, e.g.
/// `AuthorizedKeysFile /path`).
pub fn start_sshd_with(
    dir: &Path,
    user_ca_pub: &Path,
    host_key: &Path,
    host_cert: &Path,
    extra: &str,
) -> Sshd {
    start_sshd_file(&dir.join("sshd_config"), &dir.join("sshd.log"), |port| {
        format!(
            "{extra}ListenAddress 127.0.0.1:{port}\n\
             HostKey {hk}\n\
             HostCertificate {hc}\n\
             TrustedUserCAKeys {ca}\n\
             AuthorizedKeysFile none\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             UsePAM no\n\
             PidFile {pid}\n\
             LogLevel VERBOSE\n",
            hk = host_key.display(),
            hc = host_cert.display(),
            ca = user_ca_pub.display(),
            pid = dir.join("sshd.pid").display(),
        )
    })
}

/// sshd in the foreground with the config `make(port)` written to
/// `config` (an OS-chosen free port; tried again on a port taken in the
/// meantime), its log in `log`.
pub fn start_sshd_file(config: &Path, log: &Path, make: impl Fn(u16) -> String) -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install openssh-server (.ci/run does)"
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    for _ in 0..5 {
        let port = free_port();
        std::fs::write(config, make(port)).unwrap();
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(config)
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut sshd = Sshd { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sshd;
            }
            if let Ok(Some(_)) = sshd.child.try_wait() {
                break; // port taken in the meantime: try another
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = sshd.child.kill();
    }
    panic!(
        "sshd did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn ssh(
    sshd: &Sshd,
    dir: &Path,
    key: &Path,
    cert: &Path,
    known_hosts: &Path,
    cmd: &str,
) -> Output {
    ssh_with(sshd, dir, key, cert, known_hosts, cmd, &[])
}

/// [`ssh`] with more `-o` options (`HostKeyAlgorithms=...`), given first
/// so that they win.
pub fn ssh_with(
    sshd: &Sshd,
    dir: &Path,
    key: &Path,
    cert: &Path,
    known_hosts: &Path,
    cmd: &str,
    options: &[&str],
) -> Output {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-p", &sshd.port.to_string()]);
    for o in options {
        c.args(["-o", o]);
    }
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "CheckHostIP=no",
    ])
    .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
    .arg("-o")
    .arg(format!("CertificateFile={}", cert.display()))
    .arg("-i")
    .arg(key)
    .arg(format!("{}@127.0.0.1", user()))
    .arg(cmd)
    .current_dir(dir)
    .output()
    .unwrap()
}

/// OpenSSH's `ssh-agent`, in the foreground on a socket in a test
/// directory; killed when dropped.
pub struct SshAgent {
    child: std::process::Child,
    /// Its socket (`SSH_AUTH_SOCK`).
    pub socket: PathBuf,
}

impl SshAgent {
    /// Starts `ssh-agent -D -a DIR/NAME`.
    pub fn start(dir: &Path, name: &str) -> Self {
        let socket = dir.join(name);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) must be installed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Self { child, socket }
    }

    /// `ssh-add KEY`.
    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.socket)
            .arg(key));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
