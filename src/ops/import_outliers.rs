//! `import_outliers`: start from pre-generated outlier files (the original
//! release's published npys, its `--debug` quick start) instead of
//! generating them.

use anyhow::{bail, Result};

use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::outlier_text::{unique, TEMPLATES};

pub struct ImportOutliers;

impl Op for ImportOutliers {
    fn name(&self) -> &'static str {
        "import_outliers"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "import a published outlier npy (unicode or pickled object array), optionally selecting by an index file"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::with_default(
            "word_templates",
            ParamType::Bool,
            ParamValue::Bool(false),
            "for word outliers: add the four templates of each sentence's last word, as the original's --debug path",
        )]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("strings", ArtifactKind::Npy, "the published outlier strings"),
            PortSpec::new("index", ArtifactKind::Npy, "optional index file (e.g. ImageNet_outlier_caption_index.npy): keep these, unique").optional(),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("sentences", ArtifactKind::Npy, "the outlier sentences (numpy unicode array)")]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let strings = formats::read_strings(ctx.input("strings")?)?;
        let mut sentences: Vec<String> = match ctx.input_list("index") {
            [] => strings,
            [index] => {
                let index = formats::read_indices(index)?;
                let mut kept = Vec::with_capacity(index.len());
                for i in index {
                    match strings.get(i as usize) {
                        Some(s) if i >= 0 => kept.push(s.trim_end_matches('\n').to_string()),
                        _ => bail!("node {}: index {i} is out of range for {} strings", ctx.node, strings.len()),
                    }
                }
                unique(&kept)
            }
            _ => bail!("node {}: one index file at most", ctx.node),
        };
        if ctx.param_bool("word_templates")? {
            let words: Vec<String> = sentences.iter().filter_map(|s| s.split(' ').next_back().map(str::to_string)).collect();
            for t in TEMPLATES {
                sentences.extend(words.iter().map(|w| t.replace("{x}", w)));
            }
        }
        formats::write_strings(ctx.output("sentences")?, &sentences)?;
        println!("{} sentences", sentences.len());
        Ok(())
    }
}
