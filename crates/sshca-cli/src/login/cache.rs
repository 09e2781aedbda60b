//! What a login leaves on the person's machine: the CA keys of each
//! server signed in to (0600, under `$XDG_STATE_HOME/sshca/`, default
//! `~/.local/state/sshca/`), which `sshca login --check` compares the
//! agent's certificates with, without the network.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use sshca::core::ssh_key::PublicKey;
use sshca::core::KeyData;
use sshca::signer::{Error, ErrorKind, Result};

/// The server URL as it is keyed: lower-case scheme and host, no trailing
/// slash.
pub(super) fn normalise(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let mut out = format!(
                "{}://{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            );
            if !path.is_empty() {
                out.push('/');
                out.push_str(path);
            }
            out
        }
        None => s.to_owned(),
    }
}

/// `$XDG_STATE_HOME/sshca`, else `~/.local/state/sshca`.
fn state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        if d.is_absolute() {
            return Ok(d.join("sshca"));
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "neither $XDG_STATE_HOME nor $HOME is set: nowhere to keep the server's CA keys",
            )
        })?;
    Ok(PathBuf::from(home).join(".local/state/sshca"))
}

/// The cache file of `server`'s CA keys.
pub(super) fn path(server: &str) -> Result<PathBuf> {
    let digest = Sha256::digest(normalise(server).as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(state_dir()?.join(format!("cas-{name}.pub")))
}

/// Keeps `keys` as `server`'s CA keys.
pub(super) fn store(server: &str, keys: &[KeyData]) -> Result<PathBuf> {
    let file = path(server)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create the state directory", dir, &e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let mut text = format!("# CA keys of {} (sshca login)\n", normalise(server));
    for k in keys {
        let line = PublicKey::new(k.clone(), "")
            .to_openssh()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode a CA key: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::files::write_atomic_with(&file, text.as_bytes(), 0o600, true)?;
    Ok(file)
}

/// `server`'s cached CA keys (`None`: never signed in there).
pub(super) fn load(server: &str) -> Result<Option<Vec<KeyData>>> {
    let file = path(server)?;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read the cached CA keys", &file, &e)),
    };
    crate::krl::key_lines(&text, &file.display().to_string()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_keyed_without_case_or_trailing_slash() {
        assert_eq!(
            normalise("HTTPS://CA.Example:8443/"),
            "https://ca.example:8443"
        );
        assert_eq!(
            normalise("https://ca.example/sshca/"),
            "https://ca.example/sshca"
        );
    }
}
