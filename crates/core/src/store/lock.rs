//! The store lock: one `run` (or `gc`, `verify --repair`) at a time per
//! store. An advisory `flock` on `STORE_DIR/lock`, released by the kernel
//! when the process ends however it ends, so a killed run never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Held while the value lives.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the store {store} is in use by another toe-pipe process ({holder}).\n  \
         fix: wait for it to finish, or give this run its own store with --store DIR"
    )]
    Busy { store: String, holder: String },
    // Not a `source` field: the message carries the OS error, and the CLI
    // prints the error chain, which would say it a second time.
    #[error("cannot lock the store at {path}: {error}")]
    Io { path: String, error: io::Error },
}

impl StoreLock {
    /// Take the lock without waiting. `what` says who holds it, for the
    /// message another process prints.
    pub fn acquire(store_root: &Path, what: &str) -> Result<StoreLock, LockError> {
        let path = store_root.join("lock");
        let io_err = |error| LockError::Io { path: path.display().to_string(), error };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_err)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    store: store_root.display().to_string(),
                    holder: if holder.is_empty() { "unknown".into() } else { holder.to_owned() },
                });
            }
            return Err(io_err(err));
        }
        let info = format!(
            "pid {}, {what}, since {}",
            std::process::id(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(info.as_bytes()));
        Ok(StoreLock { file })
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Clear the holder note. The kernel releases the flock with the
        // descriptor; unlinking the file would race with a process that
        // just opened it.
        let _ = self.file.set_len(0);
    }
}
