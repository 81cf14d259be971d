//! `toe-pipe hash PATH`: the content hash the store uses (for a file, the
//! same value `b3sum` prints).

use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::{human_bytes, Cli, CmdResult};
use crate::store::hash::{disk_size, hash_path, walk, EntryType, Symlinks};

#[derive(Args)]
pub struct HashArgs {
    pub paths: Vec<PathBuf>,
    /// Ask the kernel to drop the files from the page cache first, so the
    /// hash reads from disk (for measuring cold throughput).
    #[arg(long)]
    pub drop_cache: bool,
    /// Print the time taken and the throughput.
    #[arg(long)]
    pub time: bool,
}

pub fn run(_cli: &Cli, a: &HashArgs) -> CmdResult {
    for path in &a.paths {
        if a.drop_cache {
            drop_page_cache(path);
        }
        let t0 = Instant::now();
        let h = hash_path(path, Symlinks::Follow)?;
        let secs = t0.elapsed().as_secs_f64();
        println!("{h}  {}", path.display());
        if a.time {
            let bytes = disk_size(path);
            eprintln!(
                "{}: {} in {secs:.3}s = {}/s",
                path.display(),
                human_bytes(bytes),
                human_bytes((bytes as f64 / secs.max(1e-9)) as u64)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// posix_fadvise(DONTNEED) on every file: clean pages leave the page cache
/// without needing root (unlike /proc/sys/vm/drop_caches).
fn drop_page_cache(path: &std::path::Path) {
    let files: Vec<PathBuf> = if path.is_dir() {
        walk(path, Symlinks::Follow)
            .map(|es| es.into_iter().filter(|e| e.ty == EntryType::File).map(|e| path.join(e.rel)).collect())
            .unwrap_or_default()
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        if let Ok(file) = std::fs::File::open(&f) {
            // SAFETY: advisory call on a descriptor we own.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}
