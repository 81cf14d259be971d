//! Typed op ports: the [`op_ports!`](crate::op_ports) macro declares an
//! op's inputs or outputs as a struct of paths, from which the catalog's
//! port entries ([`PortInfo`]) are derived and into which the worker reads
//! the job's paths, once, before the op runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::spec::ArtifactKind;

/// One named input or output of an op, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub kind: ArtifactKind,
    /// An optional input may be left unconnected.
    pub optional: bool,
    /// The input takes a list of artifacts (`inputs.x = ["a.out", "b.out"]`).
    pub list: bool,
    pub doc: String,
}

/// Inputs or outputs, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDir {
    Input,
    Output,
}

impl PortDir {
    pub fn name(self) -> &'static str {
        match self {
            PortDir::Input => "input",
            PortDir::Output => "output",
        }
    }
}

/// A struct of ports: its catalog entries and how it is read from a job's
/// paths. Implemented by [`op_ports!`](crate::op_ports); `()` is "none".
pub trait PortSet: Sized {
    fn infos() -> Vec<PortInfo>;
    fn read_all(r: &mut PortReader) -> anyhow::Result<Self>;

    /// The ports' paths from a job: every declared port as its field's shape
    /// (one path, an optional one, a list) and no undeclared port.
    fn from_paths(node: &str, dir: PortDir, paths: &BTreeMap<String, Vec<PathBuf>>) -> anyhow::Result<Self> {
        let infos = Self::infos();
        if let Some(name) = paths.keys().find(|k| !infos.iter().any(|i| &i.name == *k)) {
            bail!("node {node}: the op has no {} `{name}`", dir.name());
        }
        Self::read_all(&mut PortReader { node, dir, paths })
    }
}

impl PortSet for () {
    fn infos() -> Vec<PortInfo> {
        Vec::new()
    }
    fn read_all(_: &mut PortReader) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A job's paths while a [`PortSet`] takes its fields.
pub struct PortReader<'a> {
    node: &'a str,
    dir: PortDir,
    paths: &'a BTreeMap<String, Vec<PathBuf>>,
}

impl PortReader<'_> {
    fn get(&self, name: &str) -> &[PathBuf] {
        self.paths.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
    /// The one artifact of a port.
    pub fn one(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        match self.get(name) {
            [one] => Ok(one.clone()),
            [] if self.dir == PortDir::Output => bail!("node {}: the job gives no path for output `{name}`", self.node),
            [] => bail!("node {}: input `{name}` is not connected", self.node),
            _ => bail!("node {}: {} `{name}` has several artifacts; the op expects one", self.node, self.dir.name()),
        }
    }
    /// The artifact of an optional port, if connected.
    pub fn optional(&mut self, name: &str) -> anyhow::Result<Option<PathBuf>> {
        match self.get(name) {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => bail!("node {}: {} `{name}` takes one artifact at most", self.node, self.dir.name()),
        }
    }
    /// The artifacts of a list port (empty if unconnected).
    pub fn list(&mut self, name: &str) -> anyhow::Result<Vec<PathBuf>> {
        Ok(self.get(name).to_vec())
    }
}

/// Declare an op's inputs or outputs as a struct of paths. Each field is a
/// port named like the field, with its doc comment as the catalog's
/// description and its artifact kind as its type: `features: Npy` (one
/// path, a `PathBuf`), `bpe: Option<File>` (an optional input, an
/// `Option<PathBuf>`), `results: Vec<Json>` (a list input, a
/// `Vec<PathBuf>`) or `plots: OptVec<Dir>` (an optional list input, a
/// `Vec<PathBuf>`, empty when unconnected). Kinds are the variants of
/// [`ArtifactKind`].
///
/// ```ignore
/// op_ports! {
///     pub struct Inputs {
///         /// the strings to embed
///         strings: Npy,
///         /// BPE vocabulary; default: the venv's clip package
///         bpe: Option<File>,
///     }
/// }
/// ```
#[macro_export]
macro_rules! op_ports {
    (@ty Option $kind:ident) => { Option<::std::path::PathBuf> };
    (@ty Vec $kind:ident) => { Vec<::std::path::PathBuf> };
    (@ty OptVec $kind:ident) => { Vec<::std::path::PathBuf> };
    (@ty $kind:ident) => { ::std::path::PathBuf };
    // (kind, optional, list)
    (@info Option $kind:ident) => { ($crate::spec::ArtifactKind::$kind, true, false) };
    (@info Vec $kind:ident) => { ($crate::spec::ArtifactKind::$kind, false, true) };
    (@info OptVec $kind:ident) => { ($crate::spec::ArtifactKind::$kind, true, true) };
    (@info $kind:ident) => { ($crate::spec::ArtifactKind::$kind, false, false) };
    (@read $r:ident $name:ident Option $kind:ident) => { $r.optional($crate::ops::field_name(stringify!($name)))? };
    (@read $r:ident $name:ident Vec $kind:ident) => { $r.list($crate::ops::field_name(stringify!($name)))? };
    (@read $r:ident $name:ident OptVec $kind:ident) => { $r.list($crate::ops::field_name(stringify!($name)))? };
    (@read $r:ident $name:ident $kind:ident) => { $r.one($crate::ops::field_name(stringify!($name)))? };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $shape:ident $(< $kind:ident >)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            $($(#[doc = $doc])* pub $field: $crate::op_ports!(@ty $shape $($kind)?),)*
        }
        impl $crate::ops::PortSet for $name {
            fn infos() -> Vec<$crate::ops::PortInfo> {
                vec![$({
                    let doc: Vec<&str> = vec![$($doc.trim()),*];
                    let (kind, optional, list) = $crate::op_ports!(@info $shape $($kind)?);
                    $crate::ops::PortInfo { name: $crate::ops::field_name(stringify!($field)).to_owned(), kind, optional, list, doc: doc.join(" ") }
                }),*]
            }
            fn read_all(r: &mut $crate::ops::PortReader) -> $crate::__anyhow::Result<Self> {
                Ok($name { $($field: $crate::op_ports!(@read r $field $shape $($kind)?),)* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::op_ports! {
        struct Inputs {
            /// a model
            model: Pt,
            /// optional vocabulary
            bpe: Option<File>,
            /// several sets
            sets: Vec<Npy>,
            /// several sets, if any
            more: OptVec<Npy>,
        }
    }

    #[test]
    fn ports_are_declared_and_read_by_shape() {
        let infos = Inputs::infos();
        let shapes: Vec<(&str, ArtifactKind, bool, bool)> =
            infos.iter().map(|p| (p.name.as_str(), p.kind, p.optional, p.list)).collect();
        assert_eq!(
            shapes,
            [
                ("model", ArtifactKind::Pt, false, false),
                ("bpe", ArtifactKind::File, true, false),
                ("sets", ArtifactKind::Npy, false, true),
                ("more", ArtifactKind::Npy, true, true)
            ]
        );
        assert_eq!(infos[0].doc, "a model");

        let paths = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<PathBuf>> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(PathBuf::from).collect())).collect()
        };
        let i =
            Inputs::from_paths("n", PortDir::Input, &paths(&[("model", &["m.pt"]), ("sets", &["a", "b"])])).unwrap();
        assert_eq!(
            (i.model, i.bpe, i.sets, i.more),
            (PathBuf::from("m.pt"), None, vec![PathBuf::from("a"), PathBuf::from("b")], vec![])
        );
        let err = Inputs::from_paths("n", PortDir::Input, &paths(&[("sets", &[])])).unwrap_err().to_string();
        assert_eq!(err, "node n: input `model` is not connected");
        let err = Inputs::from_paths("n", PortDir::Input, &paths(&[("model", &["m"]), ("bpe", &["a", "b"])]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "node n: input `bpe` takes one artifact at most");
        let err = Inputs::from_paths("n", PortDir::Input, &paths(&[("model", &["m"]), ("extra", &["a"])]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "node n: the op has no input `extra`");
    }
}
