//! `outliers_description`: description-level textual outliers from a
//! descriptors JSON (class name -> descriptor phrases, as
//! `descriptors_imagenet.json`): "This is a photo of " + phrase, in file
//! order, plus the four templates of each phrase.

use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};

use super::prelude::*;
use crate::formats;
use crate::toe::outlier_text::{description_sentences, description_sentences_as_released};

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

op_params! {
    pub struct Params {
        /// add the four template sentences of every phrase
        templates: bool = true,
        /// fill the templates as the original: with each whole sentence passed through str.strip("a photo of "), which strips those characters from both ends ("fish" -> "fis"), four templates per sentence in sentence order
        original_strip: bool = false,
    }
}

op_ports! {
    pub struct Inputs {
        /// class name -> list of descriptor phrases
        descriptors: Json,
    }
}

op_ports! {
    pub struct Outputs {
        /// the outlier sentences (numpy unicode array)
        sentences: Npy,
    }
}

impl TypedOp for OutliersDescription {
    const NAME: &'static str = "outliers_description";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "description-level textual outliers: sentences from LLM-written class descriptors, plus templates";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, _: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let classes = read_descriptors(&i.descriptors)?;
        let phrases: Vec<String> = classes.into_iter().flat_map(|(_, p)| p).collect();
        let sentences = if p.original_strip {
            description_sentences_as_released(&phrases, p.templates)
        } else {
            description_sentences(&phrases, p.templates)
        };
        formats::write_strings(&o.sentences, &sentences)?;
        println!("{} phrases -> {} sentences", phrases.len(), sentences.len());
        Ok(())
    }
}
