//! Files the CLI writes: certificates where ssh-keygen puts them, atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use sshca::core::Certificate;
use sshca::signer::{Error, ErrorKind, Result};

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(what, path, &e)
}

/// Where `ssh-keygen -s` writes the certificate of KEY: a trailing `.pub`
/// replaced by `-cert.pub`, else `-cert.pub` appended.
pub fn cert_path_for(key: &Path) -> PathBuf {
    let s = key.as_os_str().to_string_lossy();
    let base = s.strip_suffix(".pub").unwrap_or(&s);
    PathBuf::from(format!("{base}-cert.pub"))
}

/// Writes `contents` to `path` atomically (mode 0644, replacing any file):
/// a temporary file in the same directory, then a rename; nothing partial is
/// ever left behind.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic_with(path, contents, 0o644, true)
}

/// Like [`write_atomic`] with a file mode, and with `replace = false` an
/// error (not an overwrite) when `path` exists.
pub fn write_atomic_with(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".sshca-")
        .tempfile_in(dir)
        .map_err(|e| io_err(dir, "cannot create a temporary file in", e))?;
    tmp.write_all(contents)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| io_err(path, "cannot write", e))?;
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, "cannot set permissions of", e))?;
    }
    if replace {
        tmp.persist(path)
            .map_err(|e| io_err(path, "cannot write", e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} already exists (use --force to overwrite)",
                        path.display()
                    ),
                )
            } else {
                io_err(path, "cannot write", e.error)
            }
        })?;
    }
    Ok(())
}

/// Writes a copy of an issued certificate to `dir/<serial>.crt`, atomically
/// and never overwriting (Salt's copypath).
pub fn save_issued_copy(dir: &Path, cert: &Certificate, text: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create", e))?;
    let path = dir.join(format!("{}.crt", cert.serial()));
    write_atomic_with(&path, text.as_bytes(), 0o644, false)?;
    Ok(path)
}

/// `PATH.pub`, the public half written beside a private key; unless
/// `replace`, neither PATH nor PATH.pub may exist (`hint` ends the error,
/// e.g. how to overwrite).
#[cfg(feature = "local")]
pub fn key_pair_paths(path: &Path, replace: bool, hint: &str) -> Result<std::path::PathBuf> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = std::path::PathBuf::from(pub_path);
    if !replace {
        for p in [path, pub_path.as_path()] {
            if p.exists() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} already exists{hint}", p.display()),
                ));
            }
        }
    }
    Ok(pub_path)
}
