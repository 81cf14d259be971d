//! Where a workspace-relative output path really leads. Output paths are
//! checked as text when the file is read (relative, no `..` out of the
//! workspace), but a symbolic link among the folders that already exist can
//! still lead anywhere; so the folders are resolved too, by `check` and
//! again just before toe-pipe writes there (a node may have made the link
//! in between).
//!
//! The last component is not followed: toe-pipe replaces what is at the
//! path (a link included), it never writes through it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// An output path, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealPath {
    /// Its folders that exist resolved through their links, the rest
    /// appended as written.
    pub real: PathBuf,
    /// Set when one of its folders is a link that leads out of the
    /// workspace, or to nothing.
    pub escape: Option<Escape>,
}

/// A folder of an output path that is a symbolic link toe-pipe must not
/// write through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escape {
    /// The link, relative to the workspace.
    pub link: PathBuf,
    /// Where it leads, as far as it resolves.
    pub to: PathBuf,
    /// The link's target does not exist.
    pub dangling: bool,
}

impl Escape {
    /// `link is a symbolic link to /x`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} is a symbolic link to {}{}",
            self.link.display(),
            self.to.display(),
            if self.dangling { ", which does not exist" } else { "" }
        )
    }

    /// The error for output `output` at `rel` (`check` and `run` say the
    /// same): the message and the fix.
    pub fn error(&self, output: &str, rel: &Path) -> (String, String) {
        (
            format!("output `{output}` at {} leads out of the workspace: {}", rel.display(), self.describe()),
            format!(
                "write a path whose folders are inside the workspace (a link may lead elsewhere inside it), or replace the link `{}` with a folder",
                self.link.display()
            ),
        )
    }
}

/// Resolves output paths of one workspace, each folder once.
pub struct Resolver {
    /// The workspace with its own links resolved.
    workspace_real: PathBuf,
    workspace: PathBuf,
    /// Resolved folders (workspace-relative) seen so far.
    folders: HashMap<PathBuf, RealPath>,
}

impl Resolver {
    pub fn new(workspace: &Path) -> Resolver {
        Resolver::with_real(workspace, real_path(workspace))
    }

    /// With the workspace's real path known already.
    pub fn with_real(workspace: &Path, workspace_real: PathBuf) -> Resolver {
        Resolver { workspace_real, workspace: workspace.to_path_buf(), folders: HashMap::new() }
    }

    pub fn workspace_real(&self) -> &Path {
        &self.workspace_real
    }

    /// Resolve `rel` (relative to the workspace, lexically normalised).
    pub fn resolve(&mut self, rel: &Path) -> RealPath {
        let name = rel.file_name().map(PathBuf::from).unwrap_or_default();
        let folder = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut resolved = self.folder(&folder);
        resolved.real.push(name);
        resolved
    }

    fn folder(&mut self, rel: &Path) -> RealPath {
        if let Some(r) = self.folders.get(rel) {
            return r.clone();
        }
        let resolved = match rel.parent() {
            None => RealPath { real: self.workspace_real.clone(), escape: None },
            Some(up) => {
                let above = self.folder(up);
                let name = rel.file_name().unwrap_or_default();
                match (&above.escape, fs::symlink_metadata(self.workspace.join(rel))) {
                    // Once out, or once a folder is missing (it will be
                    // created as a real folder), the rest is as written.
                    (Some(_), _) | (None, Err(_)) => {
                        RealPath { real: above.real.join(name), escape: above.escape.clone() }
                    }
                    (None, Ok(meta)) if meta.file_type().is_symlink() => {
                        let through = above.real.join(name);
                        match fs::canonicalize(&through) {
                            Ok(to) if to.starts_with(&self.workspace_real) => RealPath { real: to, escape: None },
                            Ok(to) => RealPath {
                                real: to.clone(),
                                escape: Some(Escape { link: rel.to_path_buf(), to, dangling: false }),
                            },
                            Err(_) => {
                                let to = fs::read_link(&through).unwrap_or_default();
                                RealPath {
                                    real: through,
                                    escape: Some(Escape { link: rel.to_path_buf(), to, dangling: true }),
                                }
                            }
                        }
                    }
                    (None, Ok(_)) => RealPath { real: above.real.join(name), escape: None },
                }
            }
        };
        self.folders.insert(rel.to_path_buf(), resolved.clone());
        resolved
    }
}

/// `path` with the links of its existing part resolved and the rest
/// appended (for the store, the pipeline file and sources, which need not
/// exist yet).
pub fn real_path(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut base = path;
    loop {
        if let Ok(real) = fs::canonicalize(base) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (base.parent(), base.file_name()) {
            (Some(up), Some(name)) => {
                rest.push(name);
                base = up;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_inside_are_followed_and_links_out_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        let outside = root.path().join("outside");
        fs::create_dir_all(ws.join("real/sub")).unwrap();
        fs::create_dir(&outside).unwrap();
        symlink(&outside, ws.join("out")).unwrap();
        symlink("real", ws.join("in")).unwrap();
        symlink("/nonexistent/x", ws.join("dangling")).unwrap();
        let mut r = Resolver::new(&ws);
        let ws_real = r.workspace_real().to_path_buf();

        assert_eq!(r.resolve(Path::new("a/b.txt")), RealPath { real: ws_real.join("a/b.txt"), escape: None });
        assert_eq!(r.resolve(Path::new("in/sub/x")).real, ws_real.join("real/sub/x"));
        assert!(r.resolve(Path::new("in/sub/x")).escape.is_none());
        // The last component is replaced, not followed.
        assert_eq!(r.resolve(Path::new("out")), RealPath { real: ws_real.join("out"), escape: None });

        let e = r.resolve(Path::new("out/deeper/f.txt"));
        assert_eq!(e.real, fs::canonicalize(&outside).unwrap().join("deeper/f.txt"));
        let esc = e.escape.unwrap();
        assert_eq!((esc.link.as_path(), esc.dangling), (Path::new("out"), false));
        let d = r.resolve(Path::new("dangling/f.txt")).escape.unwrap();
        assert!(d.dangling);
        assert_eq!(d.describe(), "dangling is a symbolic link to /nonexistent/x, which does not exist");
    }

    #[test]
    fn real_path_resolves_the_part_that_exists() {
        let root = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(root.path()).unwrap();
        assert_eq!(real_path(&root.path().join("not/yet")), real.join("not/yet"));
    }
}
