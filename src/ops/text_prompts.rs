//! `text_prompts`: fill a prompt template with each of a list of strings,
//! e.g. "a photo of a {}." with the class names (MCM's class prompts) or
//! with the words of a word list (NegLabel's candidate negative labels).

use super::prelude::*;
use crate::formats;

pub struct TextPrompts;

op_params! {
    pub struct Params {
        /// the prompt; {} is replaced by each string (MCM's "a photo of a {}.")
        template: String = "a photo of a {}.".into(),
    }
}

op_ports! {
    pub struct Inputs {
        /// the strings: a numpy string array (.npy, e.g. class names in label order) or a text file with one per line (blank lines skipped)
        strings: File,
    }
}

op_ports! {
    pub struct Outputs {
        /// the prompts, in the order of the strings (numpy unicode array)
        prompts: Npy,
    }
}

impl TypedOp for TextPrompts {
    const NAME: &'static str = "text_prompts";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "fill a prompt template with each string of a list (class names, a word list): strings for embed_text";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        if p.template.matches("{}").count() != 1 {
            bail!(
                "node {}: params.template = {:?} must contain {{}} exactly once (where each string goes)",
                ctx.node,
                p.template
            );
        }
        let strings = read_string_list(&i.strings)?;
        if strings.is_empty() {
            bail!("node {}: {} holds no strings", ctx.node, i.strings.display());
        }
        let prompts: Vec<String> = strings.iter().map(|s| p.template.replace("{}", s.trim())).collect();
        formats::write_strings(&o.prompts, &prompts)?;
        println!("{} prompts, e.g. {:?}", prompts.len(), prompts[0]);
        Ok(())
    }
}

/// A numpy string array, or the non-blank lines of a text file.
fn read_string_list(path: &std::path::Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"\x93NUMPY") {
        return formats::read_strings(path);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: neither a .npy string array nor UTF-8 text", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}
