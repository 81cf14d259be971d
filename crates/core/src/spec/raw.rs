//! The pipeline file exactly as written, with byte spans (toml's `Spanned`)
//! so that every later error can point at a line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::ParamValue;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub pipeline: Option<Spanned<RawHeader>>,
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<ParamValue>>,
    #[serde(default)]
    pub node: Vec<Spanned<RawNode>>,
    /// Source path (variables allowed) -> what it is and where to get it;
    /// the fix shown when a source at or under that path is missing.
    #[serde(default)]
    pub sources_help: BTreeMap<String, Spanned<String>>,
    /// Defaults for every node's `resources` (see `spec::resources`).
    pub resources: Option<RawResources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    /// Directory that relative paths start from, relative to the file's
    /// directory (default: the file's directory).
    pub workspace: Option<Spanned<String>>,
    /// Make every gpu node require a GPU.
    pub require_gpu: Option<bool>,
    /// Materialised outputs (workspace paths) that `run` prints at the end.
    pub show: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub id: Spanned<String>,
    pub op: Option<Spanned<String>>,
    pub cmd: Option<Spanned<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<ParamValue>>,
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<OneOrMany>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<OneOrMany>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<RawOutput>>,
    pub device: Option<Spanned<String>>,
    pub require_gpu: Option<Spanned<bool>>,
    /// What the node asks of the machine (`cpus`, ...). Not `Spanned`:
    /// toml cannot give a span to a table written with dotted keys.
    pub resources: Option<RawResources>,
    /// Template variables: one node per combination of values.
    #[serde(default)]
    pub for_each: BTreeMap<String, Spanned<ForEachValues>>,
    pub doc: Option<String>,
}

/// `resources = { cpus = 4 }` on a node, or the pipeline-wide
/// `[resources]` (which may hold a `gpu` table of defaults for gpu nodes).
/// Numbers may be `"${var}"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub cpus: Option<Spanned<ParamValue>>,
    /// The rest are for cluster executors (Slurm).
    pub gpus: Option<Spanned<ParamValue>>,
    pub mem: Option<Spanned<String>>,
    pub time: Option<Spanned<String>>,
    pub partition: Option<Spanned<String>>,
    pub account: Option<Spanned<String>>,
    pub qos: Option<Spanned<String>>,
    pub sbatch: Option<Spanned<Vec<String>>>,
    pub gpu: Option<Box<RawResources>>,
}

impl RawResources {
    /// Where the table's first value is (the table itself has no span).
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        let strings = [&self.mem, &self.time, &self.partition, &self.account, &self.qos];
        self.cpus
            .as_ref()
            .or(self.gpus.as_ref())
            .map(Spanned::span)
            .or_else(|| strings.iter().find_map(|s| s.as_ref().map(Spanned::span)))
            .or_else(|| self.sbatch.as_ref().map(Spanned::span))
            .or_else(|| self.gpu.as_ref().and_then(|g| g.span()))
    }
}

/// A string or an array of strings.
#[derive(Debug, Clone)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    items.push(s);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// `for_each.NAME`: a string (`"${list}"`) or an array whose elements are
/// strings (interpolated) or literal numbers and bools.
#[derive(Debug, Clone)]
pub enum ForEachValues {
    One(ForEachItem),
    Many(Vec<ForEachItem>),
}

#[derive(Debug, Clone)]
pub enum ForEachItem {
    Text(String),
    Literal(ParamValue),
}

impl<'de> Deserialize<'de> for ForEachItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ForEachItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or a bool")
            }
            fn visit_str<E>(self, v: &str) -> Result<ForEachItem, E> {
                Ok(ForEachItem::Text(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ForEachItem, E> {
                Ok(ForEachItem::Literal(ParamValue::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ForEachItem, E> {
                i64::try_from(v)
                    .map(|v| ForEachItem::Literal(ParamValue::Int(v)))
                    .map_err(|_| E::custom(format!("{v} is too large for a 64-bit integer")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ForEachItem, E> {
                Ok(ForEachItem::Literal(ParamValue::Float(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ForEachItem, E> {
                Ok(ForEachItem::Literal(ParamValue::Bool(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ForEachValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ForEachValues;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (\"${list}\") or an array of strings, numbers or bools")
            }
            fn visit_str<E>(self, v: &str) -> Result<ForEachValues, E> {
                Ok(ForEachValues::One(ForEachItem::Text(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ForEachValues, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<ForEachItem>()? {
                    items.push(item);
                }
                Ok(ForEachValues::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// `outputs.NAME = "npy"` (kind only) or `{ kind = "npy", path = "..." }`.
#[derive(Debug)]
pub struct RawOutput {
    pub kind: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawOutput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOutput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a kind ("npy") or a table { kind = "npy", path = "dir/file.npy" }"#)
            }
            fn visit_str<E>(self, v: &str) -> Result<RawOutput, E> {
                // No span for the shorthand's inner string; the caller uses
                // the whole value's span.
                Ok(RawOutput { kind: Some(Spanned::new(0..0, v.to_owned())), path: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawOutput, A::Error> {
                let mut out = RawOutput { kind: None, path: None };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "kind" => out.kind = Some(map.next_value()?),
                        "path" => out.path = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["kind", "path"])),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// Just enough of a node to say which node an error is in when the strict
/// parse fails.
#[derive(Debug, Deserialize)]
pub struct LenientFile {
    #[serde(default)]
    pub node: Vec<Spanned<LenientNode>>,
}

#[derive(Debug, Deserialize)]
pub struct LenientNode {
    pub id: Option<toml::Value>,
}
