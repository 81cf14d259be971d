//! A real single-node Slurm cluster for the Slurm executor's tests
//! (scripts/slurm_local.sh), in a temp folder, stopped on drop. Where it
//! cannot start (no Slurm installed, not root), tests skip with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub version: String,
}

/// scripts/slurm_local.sh of the workspace (this file serves the tests of
/// crates/core and of the root crate).
fn script() -> PathBuf {
    let rel = Path::new("scripts/slurm_local.sh");
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|d| d.join(rel)).find(|p| p.is_file()).unwrap_or(rel.into())
}

impl Cluster {
    /// Start one, or say why not.
    pub fn start() -> Result<Cluster, String> {
        let found = |cmd: &str| Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output();
        if !found("sbatch").is_ok_and(|o| o.status.success()) {
            return Err("sbatch is not on PATH (apt-get install slurm-wlm munge)".into());
        }
        let dir = tempfile::Builder::new().prefix("toe-slurm-").tempdir().map_err(|e| e.to_string())?;
        // Ports of its own, so that it does not meet another cluster here.
        let port = 20000 + (std::process::id() % 20000) * 2;
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &dir.path().display().to_string()])
            .env("SLURM_LOCAL_PORT", port.to_string())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
        if !out.status.success() {
            return Err(format!("the cluster did not start: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let conf = dir.path().join("slurm.conf");
        let version = Command::new("sbatch")
            .arg("--version")
            .env("SLURM_CONF", &conf)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Cluster { dir, conf, version })
    }

    /// The environment a toe-pipe (or Slurm command) needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SLURM_CONF", self.conf.display().to_string())]
    }

    /// A Slurm command's output against this cluster.
    pub fn command(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().expect(program);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// squeue's state of a job (`--states=all`), or None once it has left
    /// the controller.
    pub fn state(&self, job: &str) -> Option<String> {
        let text = self.command("squeue", &["--noheader", "--states=all", &format!("--jobs={job}"), "--format=%T"]);
        text.lines().next().map(|l| l.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// The job completion log's line for a job.
    pub fn completion(&self, job: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("jobcomp.txt")).unwrap_or_default();
        text.lines().find(|l| l.starts_with(&format!("JobId={job} "))).map(str::to_owned)
    }
}

/// A line on the test's stderr even when libtest captures output (it
/// captures the print macros only), so that CI logs show whether the Slurm
/// tests ran or why they skipped.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.dir.path().display().to_string()]).output();
    }
}
