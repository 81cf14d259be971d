//! Stopping every process of the running nodes when toe-pipe dies, however
//! it dies. Each node runs in its own process group, and its leader gets
//! `PR_SET_PDEATHSIG`; but that signal reaches only the leader, not the
//! subshells, pipelines and commands it started, which would run on and
//! write after the run. A SIGKILL cannot be caught, so the cleanup cannot
//! run in toe-pipe itself: a small helper process, forked when a run
//! starts its first node, keeps the list of node process groups and kills
//! them all when its pipe from toe-pipe closes, which the kernel does when
//! toe-pipe exits for any reason.
//!
//! On the pipe: `+PGID\n` when a node starts, written by the node's own
//! process after it made its group and before it execs (so no node runs
//! unlisted), and `-PGID\n` once the node is over, written before its
//! leader is reaped (so the group id cannot have been reused meanwhile).
//!
//! Not covered: a process that leaves its node's process group (`setsid`,
//! `setpgid`); no cgroup is used.

use std::io;
use std::os::fd::RawFd;

/// Process groups the helper can hold at once: more than the nodes that
/// can run at a time.
const CAPACITY: usize = 1 << 16;

/// The helper process and the write end of its pipe.
#[derive(Debug)]
pub struct Reaper {
    fd: RawFd,
    pid: libc::pid_t,
}

impl Reaper {
    /// Fork the helper.
    pub fn start() -> io::Result<Reaper> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`. Close-on-exec,
        // so that no node holds the write end (the helper would never see
        // the pipe close).
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (read, write) = (fds[0], fds[1]);
        // Allocated here: between fork and exit, the child of a threaded
        // process may only make async-signal-safe calls, so no allocation.
        let groups: Vec<libc::pid_t> = Vec::with_capacity(CAPACITY);
        // SAFETY: the child only makes async-signal-safe calls (`serve`).
        match unsafe { libc::fork() } {
            -1 => {
                let e = io::Error::last_os_error();
                // SAFETY: closes the descriptors made above.
                unsafe {
                    libc::close(read);
                    libc::close(write);
                }
                Err(e)
            }
            // SAFETY: in the forked child, which never returns.
            0 => unsafe { serve(read, write, groups) },
            pid => {
                // SAFETY: the parent's copy of the read end.
                unsafe { libc::close(read) };
                Ok(Reaper { fd: write, pid })
            }
        }
    }

    /// The write end, for [`register_self`] in a node's process.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Forget process group `pgid`: its node is over. Call before reaping
    /// the group's leader.
    pub fn release(&self, pgid: libc::pid_t) {
        let mut buf = [0u8; 24];
        let n = message(b'-', pgid, &mut buf);
        // A helper that is gone cannot be told; nothing else to do.
        // SAFETY: writes `n` bytes of `buf`.
        let _ = unsafe { libc::write(self.fd, buf.as_ptr().cast(), n) };
    }
}

impl Drop for Reaper {
    /// Closing the pipe ends the helper (every node is over by now, so it
    /// kills nothing); then it is reaped.
    fn drop(&mut self) {
        // SAFETY: our descriptor and our child.
        unsafe {
            libc::close(self.fd);
            let mut status = 0;
            while libc::waitpid(self.pid, &mut status, 0) == -1
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

/// In a node's process, between fork and exec: add its process group
/// (its own pid, after `setpgid(0, 0)`) to the helper's list.
///
/// # Safety
/// Only async-signal-safe calls; `fd` is the helper's pipe.
pub unsafe fn register_self(fd: RawFd) {
    let mut buf = [0u8; 24];
    let n = message(b'+', libc::getpid(), &mut buf);
    let _ = libc::write(fd, buf.as_ptr().cast(), n);
}

/// `+PGID\n` or `-PGID\n` into `buf`, without allocating; its length.
fn message(sign: u8, pgid: libc::pid_t, buf: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 20];
    let mut v = pgid.unsigned_abs();
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf[0] = sign;
    for i in 0..n {
        buf[1 + i] = digits[n - 1 - i];
    }
    buf[1 + n] = b'\n';
    n + 2
}

/// The helper: read the pipe until it closes, then kill every group still
/// listed. Async-signal-safe calls only, no allocation (`groups` has its
/// capacity already).
unsafe fn serve(read: libc::c_int, write: libc::c_int, mut groups: Vec<libc::pid_t>) -> ! {
    libc::close(write);
    // Its own process group, ignoring the signals that end a run: Ctrl-C
    // at the terminal or a kill of toe-pipe's whole group must not end the
    // helper before it has done its job.
    libc::setpgid(0, 0);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // Hold nothing of toe-pipe's but the pipe: not its stdout and stderr
    // (whoever reads them would wait for the helper too), not the store
    // lock. The pipe moves to descriptor 0.
    if read != 0 {
        libc::dup2(read, 0);
    }
    if libc::syscall(libc::SYS_close_range, 1 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) != 0 {
        for fd in 1..4096 {
            libc::close(fd);
        }
    }

    let mut buf = [0u8; 4096];
    // The message being read: its sign, its number so far.
    let (mut sign, mut value): (u8, libc::pid_t) = (0, 0);
    loop {
        let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
        if n == 0 {
            break;
        }
        if n < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break;
        }
        for &b in &buf[..n as usize] {
            match b {
                b'+' | b'-' => (sign, value) = (b, 0),
                b'0'..=b'9' => value = value.saturating_mul(10).saturating_add((b - b'0') as libc::pid_t),
                b'\n' => {
                    if sign == b'+' && value > 0 && groups.len() < groups.capacity() {
                        groups.push(value);
                    } else if sign == b'-' {
                        if let Some(i) = groups.iter().position(|&g| g == value) {
                            groups.swap_remove(i);
                        }
                    }
                    (sign, value) = (0, 0);
                }
                _ => {}
            }
        }
    }
    for &g in &groups {
        libc::kill(-g, libc::SIGKILL);
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn messages() {
        let mut buf = [0u8; 24];
        let n = message(b'+', 4194304, &mut buf);
        assert_eq!(&buf[..n], b"+4194304\n");
        let n = message(b'-', 7, &mut buf);
        assert_eq!(&buf[..n], b"-7\n");
    }
}
