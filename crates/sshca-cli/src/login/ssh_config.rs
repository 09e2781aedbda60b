//! `sshca config ssh`: the lines a person's OpenSSH needs for a server's
//! hosts — `@cert-authority PATTERN KEY` for each host CA (known_hosts),
//! and a `Match host PATTERN exec` block that signs in with `sshca login`
//! when the agent holds no valid certificate (ssh_config). Printed, or
//! with `--write` merged into `~/.ssh/known_hosts` and `~/.ssh/config`
//! between marker lines: idempotent, atomic, the rest of each file as it
//! was.

use std::path::{Path, PathBuf};

use clap::Args;
use sshca::signer::{Error, ErrorKind, Result};

use crate::output::invalid;
use crate::request::https_client;

#[derive(Args, Debug)]
pub struct SshConfigArgs {
    /// The signing service (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// PEM certificates to trust for the service (default: the system's).
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// The hosts the server's host CAs vouch for, as ssh_config and
    /// known_hosts patterns (`*.example.com`, comma-separated).
    #[arg(long, required = true)]
    hosts: String,
    /// Merge into ~/.ssh/known_hosts and ~/.ssh/config instead of printing.
    #[arg(long)]
    write: bool,
}

fn markers(server: &str) -> (String, String) {
    let s = super::cache::normalise(server);
    (format!("# BEGIN sshca {s}"), format!("# END sshca {s}"))
}

/// `text` with the block between `begin` and `end` replaced by `block`
/// (appended when there is none).
pub(crate) fn merge(text: &str, begin: &str, end: &str, block: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == begin);
    let stop = lines.iter().position(|l| l.trim_end() == end);
    let mut out = String::new();
    let push = |out: &mut String, ls: &[&str]| {
        for l in ls {
            out.push_str(l);
            out.push('\n');
        }
    };
    match (start, stop) {
        (Some(a), Some(b)) if a < b => {
            push(&mut out, &lines[..a]);
            out.push_str(block);
            push(&mut out, &lines[b + 1..]);
        }
        (None, None) => {
            out.push_str(text);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
        }
        _ => {
            return Err(invalid(format!(
                "the file has `{begin}` and `{end}` out of order or one without the other; fix or remove them by hand"
            )))
        }
    }
    Ok(out)
}

/// The command ssh runs (ssh_config expands `%` tokens, so `%` is doubled).
fn exec_command(server: &str, server_ca: Option<&Path>) -> Result<String> {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "sshca".into());
    let mut args = vec![format!("--server {}", quote(server)?)];
    if let Some(ca) = server_ca {
        let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.to_owned());
        args.push(format!("--server-ca {}", quote(&ca.display().to_string())?));
    }
    let exe = quote(&exe)?;
    let args = args.join(" ");
    Ok(format!("{exe} login --check {args} || {exe} login {args}").replace('%', "%%"))
}

/// A shell word in single quotes; what cannot go inside ssh_config's
/// double quotes is refused.
fn quote(s: &str) -> Result<String> {
    if s.contains(['"', '\'', '\n', '\\']) {
        return Err(invalid(format!(
            "`{}` cannot be written into ssh_config (it has a quote, backslash or newline)",
            sshca::core::text::escape(s)
        )));
    }
    Ok(format!("'{s}'"))
}

fn check_hosts(hosts: &str) -> Result<()> {
    if hosts.is_empty()
        || hosts.split(',').any(str::is_empty)
        || !hosts
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*?!:[],".contains(c))
    {
        return Err(invalid(format!(
            "--hosts {}: not a comma-separated list of host patterns (letters, digits, `-._*?!:[]`)",
            sshca::core::text::escape(hosts)
        )));
    }
    Ok(())
}

/// `sshca config ssh`.
pub async fn run(a: SshConfigArgs) -> Result<()> {
    super::check_server(&a.server)?;
    check_hosts(&a.hosts)?;
    let client = https_client(a.server_ca.as_deref(), None)?;
    let settings = super::settings(&client, &a.server).await?;
    if settings.host_cas.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{}: the service has no host CA (no policy issues host certificates)",
                a.server
            ),
        ));
    }
    let pattern: String = url::form_urlencoded::byte_serialize(a.hosts.as_bytes()).collect();
    let bundles = super::ca_keys(
        &client,
        &a.server,
        &settings.host_cas,
        &format!("?format=known-hosts&pattern={pattern}"),
    )
    .await?;
    let (begin, end) = markers(&a.server);
    let mut known = format!("{begin}\n");
    for (_, text) in &bundles {
        for l in text.lines().filter(|l| l.starts_with("@cert-authority ")) {
            known.push_str(l);
            known.push('\n');
        }
    }
    known.push_str(&end);
    known.push('\n');
    let exec = exec_command(&a.server, a.server_ca.as_deref())?;
    let config = format!(
        "{begin}\nMatch host {hosts} exec \"{exec}\"\n    StrictHostKeyChecking yes\nMatch all\n{end}\n",
        hosts = a.hosts
    );
    if !a.write {
        println!("# ~/.ssh/known_hosts");
        print!("{known}");
        println!();
        println!("# ~/.ssh/config");
        print!("{config}");
        return Ok(());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("$HOME is not set: cannot find ~/.ssh"))?;
    let dir = PathBuf::from(home).join(".ssh");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, &e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    for (file, block, mode) in [("known_hosts", &known, 0o644), ("config", &config, 0o600)] {
        let path = dir.join(file);
        let (text, mode) = match std::fs::read_to_string(&path) {
            Ok(t) => {
                #[cfg(unix)]
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::metadata(&path).map_or(mode, |m| m.permissions().mode() & 0o7777)
                };
                (t, mode)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), mode),
            Err(e) => return Err(Error::io("cannot read", &path, &e)),
        };
        let merged = merge(&text, &begin, &end, block).map_err(|e| e.context(path.display()))?;
        if merged != text {
            crate::files::write_atomic_with(&path, merged.as_bytes(), mode, true)?;
            eprintln!("sshca: {} updated", path.display());
        } else {
            eprintln!("sshca: {} already up to date", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_replaces_only_the_block() {
        let (b, e) = ("# BEGIN sshca x", "# END sshca x");
        let block = format!("{b}\nnew\n{e}\n");
        assert_eq!(merge("", b, e, &block).unwrap(), block);
        assert_eq!(
            merge("a\nb", b, e, &block).unwrap(),
            format!("a\nb\n{block}")
        );
        let old = format!("a\n{b}\nold\nolder\n{e}\nz\n");
        let merged = merge(&old, b, e, &block).unwrap();
        assert_eq!(merged, format!("a\n{block}z\n"));
        assert_eq!(merge(&merged, b, e, &block).unwrap(), merged);
        assert!(merge(&format!("{e}\n{b}\n"), b, e, &block).is_err());
        assert!(merge(&format!("{b}\n"), b, e, &block).is_err());
    }

    #[test]
    fn commands_are_quoted_and_percent_escaped() {
        let c = exec_command("https://ca.example:8443/a%20b", None).unwrap();
        assert!(
            c.contains("login --check --server 'https://ca.example:8443/a%%20b' || "),
            "{c}"
        );
        assert!(exec_command("https://x\"; rm -rf /", None).is_err());
        assert!(check_hosts("*.example.com,10.0.0.?").is_ok());
        assert!(
            check_hosts("a b").is_err() && check_hosts("").is_err() && check_hosts("a,,b").is_err()
        );
    }
}
