//! `import_outliers`: start from pre-generated outlier files (the original
//! release's published npys, its `--debug` quick start) instead of
//! generating them.

use super::prelude::*;
use crate::formats;
use crate::toe::outlier_text::{unique, TEMPLATES};

pub struct ImportOutliers;

op_params! {
    pub struct Params {
        /// for word outliers: add the four templates of each sentence's last word, as the original's --debug path
        word_templates: bool = false,
    }
}

op_ports! {
    pub struct Inputs {
        /// the published outlier strings
        strings: Npy,
        /// optional index file (e.g. ImageNet_outlier_caption_index.npy): keep these, unique
        index: Option<Npy>,
    }
}

op_ports! {
    pub struct Outputs {
        /// the outlier sentences (numpy unicode array)
        sentences: Npy,
    }
}

impl TypedOp for ImportOutliers {
    const NAME: &'static str = "import_outliers";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "import a published outlier npy (unicode or pickled object array), optionally selecting by an index file";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let strings = formats::read_strings(&i.strings)?;
        let mut sentences: Vec<String> = match &i.index {
            None => strings,
            Some(index) => {
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
        };
        if p.word_templates {
            let words: Vec<String> =
                sentences.iter().filter_map(|s| s.split(' ').next_back().map(str::to_string)).collect();
            for t in TEMPLATES {
                sentences.extend(words.iter().map(|w| t.replace("{x}", w)));
            }
        }
        formats::write_strings(&o.sentences, &sentences)?;
        println!("{} sentences", sentences.len());
        Ok(())
    }
}
