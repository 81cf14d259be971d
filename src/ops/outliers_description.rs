//! `outliers_description`: description-level textual outliers from a
//! descriptors JSON (class name -> descriptor phrases, as
//! `descriptors_imagenet.json`): "This is a photo of " + phrase, in file
//! order, plus the four templates of each phrase.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::outlier_text::description_sentences;

pub struct OutliersDescription;

/// The descriptor phrases of every class, in the order of the file (serde
/// maps sort their keys; the original's output follows file order).
pub fn read_descriptors(path: &Path) -> Result<Vec<(String, Vec<String>)>> {
    struct InOrder;
    impl<'de> Visitor<'de> for InOrder {
        type Value = Vec<(String, Vec<String>)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object from class name to a list of descriptor strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, Vec<String>>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let classes = de.deserialize_map(InOrder).with_context(|| format!("{}: not a descriptors file", path.display()))?;
    de.end().with_context(|| format!("{}: trailing data after the JSON object", path.display()))?;
    Ok(classes)
}

impl Op for OutliersDescription {
    fn name(&self) -> &'static str {
        "outliers_description"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "description-level textual outliers: sentences from LLM-written class descriptors, plus templates"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::with_default("templates", ParamType::Bool, ParamValue::Bool(true), "add the four template sentences of every phrase")]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("descriptors", ArtifactKind::Json, "class name -> list of descriptor phrases")]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("sentences", ArtifactKind::Npy, "the outlier sentences (numpy unicode array)")]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let classes = read_descriptors(ctx.input("descriptors")?)?;
        let phrases: Vec<String> = classes.into_iter().flat_map(|(_, p)| p).collect();
        let sentences = description_sentences(&phrases, ctx.param_bool("templates")?);
        formats::write_strings(ctx.output("sentences")?, &sentences)?;
        println!("{} phrases -> {} sentences", phrases.len(), sentences.len());
        Ok(())
    }
}
