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
    let tmp = temp_file_with(path, contents, mode)?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_err(path, "cannot write", e))?;
    if replace {
        tmp.persist(path)
            .map_err(|e| io_err(path, "cannot write", e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                exists(path)
            } else {
                io_err(path, "cannot write", e.error)
            }
        })?;
    }
    Ok(())
}

/// Files written by a bulk run, made durable together.
///
/// One writer thread stages each file in a temporary file beside its
/// destination (written, not synced, its descriptor closed), so signing
/// goes on while files are written and writers never contend for a
/// directory. [`Batch::commit`] then flushes all their data at once
/// (`syncfs` once per filesystem on Linux, `fdatasync` of each file
/// elsewhere), renames every file into place, and flushes the renames the
/// same way. A file under its final name is therefore always complete, even
/// after a crash, and a run of a thousand certificates pays two flushes
/// instead of a thousand. Staged files that are never committed are removed
/// when the batch is dropped.
#[derive(Debug)]
pub struct Batch {
    /// Both `Some` until [`Batch::commit`] or drop takes them.
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<Vec<Staged>>>,
}

/// One file for the writer thread, and where its outcome goes.
struct Job {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
    replace: bool,
    reply: tokio::sync::oneshot::Sender<Result<()>>,
}

#[derive(Debug)]
struct Staged {
    tmp: tempfile::TempPath,
    path: PathBuf,
    replace: bool,
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl Batch {
    /// Starts the writer thread.
    pub fn new() -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("sshca-writer".into())
            .spawn(move || {
                let mut staged = Vec::new();
                for job in queue {
                    let r = if !job.replace && job.path.exists() {
                        Err(exists(&job.path))
                    } else {
                        temp_file_with(&job.path, &job.contents, job.mode).map(|tmp| {
                            staged.push(Staged {
                                tmp: tmp.into_temp_path(),
                                path: job.path,
                                replace: job.replace,
                            })
                        })
                    };
                    // A caller that stopped waiting needs no answer.
                    let _ = job.reply.send(r);
                }
                staged
            })
            .map_err(|e| {
                Error::new(ErrorKind::Io, "cannot start the file writer").with_source(e)
            })?;
        Ok(Self {
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    /// Stops the writer thread and hands back what it staged.
    fn finish(&mut self) -> Result<Vec<Staged>> {
        drop(self.jobs.take());
        match self.writer.take() {
            Some(w) => w
                .join()
                .map_err(|_| Error::new(ErrorKind::Io, "the file writer failed")),
            None => Ok(Vec::new()),
        }
    }

    /// Writes `contents` (mode `mode`) to a temporary file beside `path`,
    /// to be renamed to `path` by [`Batch::commit`]; with `replace = false`
    /// an existing `path` is an error, now and at commit.
    pub async fn stage(
        &self,
        path: &Path,
        contents: Vec<u8>,
        mode: u32,
        replace: bool,
    ) -> Result<()> {
        let stopped = || {
            Error::new(
                ErrorKind::Io,
                format!("cannot write {}: the file writer stopped", path.display()),
            )
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job {
                path: path.to_owned(),
                contents,
                mode,
                replace,
                reply,
            })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Makes every staged file durable under its name: one flush of the
    /// data, the renames, one flush of the directories. Every file that can
    /// be renamed is; the first failure is returned.
    pub fn commit(mut self) -> Result<()> {
        let staged = self.finish()?;
        if staged.is_empty() {
            return Ok(());
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for s in &staged {
            let dir = parent_dir(&s.path);
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let temps: Vec<&Path> = staged.iter().map(|s| s.tmp.as_ref()).collect();
        flush_data(&temps, &dirs)?;
        let mut first_err = None;
        for s in staged {
            let r = if s.replace {
                s.tmp
                    .persist(&s.path)
                    .map_err(|e| io_err(&s.path, "cannot write", e.error))
            } else {
                s.tmp.persist_noclobber(&s.path).map_err(|e| {
                    if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                        exists(&s.path)
                    } else {
                        io_err(&s.path, "cannot write", e.error)
                    }
                })
            };
            if let (Err(e), None) = (r, &first_err) {
                first_err = Some(e);
            }
        }
        flush_dirs(&dirs)?;
        first_err.map_or(Ok(()), Err)
    }
}

/// An uncommitted batch removes its staged files (after the writer has
/// finished with them).
impl Drop for Batch {
    fn drop(&mut self) {
        // The staged temporary files delete themselves as they drop.
        let _ = self.finish();
    }
}

/// Flushes the data of `files` (which live in `dirs`) to stable storage:
/// on Linux one `syncfs` per filesystem of `dirs`.
#[cfg(target_os = "linux")]
fn flush_data(files: &[&Path], dirs: &[&Path]) -> Result<()> {
    let _ = files;
    syncfs_of(dirs)
}

/// Flushes the entries of `dirs` (the renames) to stable storage.
#[cfg(target_os = "linux")]
fn flush_dirs(dirs: &[&Path]) -> Result<()> {
    syncfs_of(dirs)
}

/// One `syncfs` per filesystem the directories live on.
#[cfg(target_os = "linux")]
fn syncfs_of(dirs: &[&Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut done = Vec::new();
    for d in dirs {
        let f = std::fs::File::open(d).map_err(|e| io_err(d, "cannot open", e))?;
        let dev = f.metadata().map_err(|e| io_err(d, "cannot stat", e))?.dev();
        if !done.contains(&dev) {
            rustix::fs::syncfs(&f)
                .map_err(|e| io_err(d, "cannot flush the filesystem of", e.into()))?;
            done.push(dev);
        }
    }
    Ok(())
}

/// Flushes the data of each of `files` to stable storage.
#[cfg(not(target_os = "linux"))]
fn flush_data(files: &[&Path], dirs: &[&Path]) -> Result<()> {
    let _ = dirs;
    for p in files {
        std::fs::File::open(p)
            .and_then(|f| f.sync_data())
            .map_err(|e| io_err(p, "cannot flush", e))?;
    }
    Ok(())
}

/// Flushes the entries of `dirs` (the renames) to stable storage.
#[cfg(not(target_os = "linux"))]
fn flush_dirs(dirs: &[&Path]) -> Result<()> {
    for d in dirs {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(d, "cannot flush", e))?;
    }
    Ok(())
}

fn exists(path: &Path) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{} already exists (use --force to overwrite)",
            path.display()
        ),
    )
}

/// A temporary file beside `path` holding `contents` with mode `mode`, not
/// synced.
fn temp_file_with(path: &Path, contents: &[u8], mode: u32) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".sshca-")
        .tempfile_in(dir)
        .map_err(|e| io_err(dir, "cannot create a temporary file in", e))?;
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, "cannot set permissions of", e))?;
    }
    tmp.write_all(contents)
        .map_err(|e| io_err(path, "cannot write", e))?;
    Ok(tmp)
}

/// Stages a copy of an issued certificate as `dir/<serial>.crt` in `batch`
/// (never overwriting: Salt's copypath).
pub async fn stage_issued_copy(
    batch: &Batch,
    dir: &Path,
    cert: &Certificate,
    text: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create", e))?;
    batch
        .stage(
            &dir.join(format!("{}.crt", cert.serial())),
            text.as_bytes().to_vec(),
            0o644,
            false,
        )
        .await
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
