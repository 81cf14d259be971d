//! Small facts about the machine.

/// The host name, for lineage records.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// This machine, as lineage records it (read once per process).
pub struct Machine {
    pub host: String,
    pub cpu_model: Option<String>,
    pub cpu_flags: Vec<String>,
}

pub fn machine() -> &'static Machine {
    static MACHINE: std::sync::OnceLock<Machine> = std::sync::OnceLock::new();
    MACHINE.get_or_init(|| Machine { host: hostname(), cpu_model: cpu_model(), cpu_flags: cpu_flags() })
}

/// CPU cores available to this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPU's model name (`model name` in /proc/cpuinfo; `Model` or the
/// implementer on ARM), for lineage records.
pub fn cpu_model() -> Option<String> {
    cpu_model_from(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

pub fn cpu_model_from(cpuinfo: &str) -> Option<String> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
    };
    field("model name")
        .or_else(|| field("Model"))
        .or_else(|| field("CPU implementer").map(|i| format!("implementer {i}")))
}

/// The vector extensions libtorch's CPU kernels choose between, as far as
/// this CPU has them (from the first processor's flags in /proc/cpuinfo):
/// why two machines print different digits for the same computation.
pub const SIMD_FLAGS: [&str; 10] =
    ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve"];

pub fn cpu_flags() -> Vec<String> {
    std::fs::read_to_string("/proc/cpuinfo").map(|t| cpu_flags_from(&t)).unwrap_or_default()
}

pub fn cpu_flags_from(cpuinfo: &str) -> Vec<String> {
    let Some(line) = cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        matches!(k.trim(), "flags" | "Features").then_some(v)
    }) else {
        return Vec::new();
    };
    let have: Vec<&str> = line.split_whitespace().collect();
    SIMD_FLAGS.iter().filter(|f| have.contains(f)).map(|f| f.to_string()).collect()
}

/// A filesystem type, and whether other machines can see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsType {
    pub name: &'static str,
    /// `Some(false)`: local to this machine (ext4, xfs, btrfs, tmpfs, ...);
    /// `Some(true)`: a network or cluster filesystem; `None`: cannot tell
    /// (FUSE, or a type not in the table).
    pub shared: Option<bool>,
}

/// statfs(2) magic numbers (linux/magic.h and the filesystems' sources).
const FS_TYPES: [(i64, &str, Option<bool>); 18] = [
    (0xEF53, "ext4", Some(false)),
    (0x5846_5342, "xfs", Some(false)),
    (0x9123_683E, "btrfs", Some(false)),
    (0x0102_1994, "tmpfs", Some(false)),
    (0x794C_7630, "overlayfs", Some(false)),
    (0x2FC1_2FC1, "zfs", Some(false)),
    (0xF2F5_2010, "f2fs", Some(false)),
    (0x8584_58F6, "ramfs", Some(false)),
    (0x6969, "nfs", Some(true)),
    (0x0BD0_0BD0, "lustre", Some(true)),
    (0x4750_4653, "gpfs", Some(true)),
    (0x1983_0326, "beegfs", Some(true)),
    (0x00C3_6400, "cephfs", Some(true)),
    (0xFE53_4D42, "smb2", Some(true)),
    (0xFF53_4D42, "cifs", Some(true)),
    (0xAAD7_AAEA, "panfs", Some(true)),
    (0x6573_5546, "fuse", None),
    (0x0187, "autofs", None),
];

/// The type of the filesystem `path` is on (for a path that does not
/// exist yet, of its nearest existing folder).
pub fn filesystem(path: &std::path::Path) -> Option<FsType> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on some targets, u32 on others
    let magic = (st.f_type as i64) & 0xFFFF_FFFF;
    Some(match FS_TYPES.iter().find(|(m, ..)| *m == magic) {
        Some(&(_, name, shared)) => FsType { name, shared },
        None => FsType { name: "unknown", shared: None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  7B13\nflags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model_from(x86).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_flags_from(x86), ["avx", "avx2", "fma"]);
        let arm = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\n";
        assert_eq!(cpu_model_from(arm).as_deref(), Some("implementer 0x41"));
        assert_eq!(cpu_flags_from(arm), ["asimd", "sve"]);
        assert_eq!(cpu_model_from(""), None);
    }

    #[test]
    fn filesystems() {
        let tmp = filesystem(std::path::Path::new("/dev/shm")).unwrap();
        assert_eq!((tmp.name, tmp.shared), ("tmpfs", Some(false)));
        // A path that does not exist yet: its nearest folder's.
        assert_eq!(filesystem(std::path::Path::new("/dev/shm/not/yet")), Some(tmp));
    }
}
