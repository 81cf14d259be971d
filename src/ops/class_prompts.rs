//! `class_prompts`: class names through prompt templates, as sentences for
//! `embed_text`, with the class index of each sentence. The image-vs-text
//! study's text cells use it: the real text cell embeds an auxiliary
//! dataset's class names ("This is a photo of a {name}" and TOE's four
//! templates), the virtual text cell fits class-conditional Gaussians to the
//! text features of each ID class's many prompts.

use super::prelude::*;
use super::shared::files::{read_labels, read_names, write_labels};
use crate::formats;
use crate::toe::prompts::{class_prompts, PromptSet};

pub struct ClassPrompts;

toe_pipe_core::param_enum! {
    /// Which prompt templates fill the names.
    pub enum Templates {
        /// "This is a photo of a {}" and TOE's four templates
        Toe = "toe",
        /// CLIP's 80 ImageNet templates
        ClipImagenet = "clip_imagenet",
        /// the demo world's caption forms (180)
        World = "world"
    }
}

op_params! {
    pub struct Params {
        /// the templates: toe (5 per name), clip_imagenet (80), world (180, the demo world's captions)
        templates: Templates = Templates::Toe,
        /// one template instead of the set, {} for the name (e.g. MCM's "a photo of a {}."); empty: use `templates`
        template: String = String::new(),
    }
}

op_ports! {
    pub struct Inputs {
        /// class names (or any strings, e.g. a word list): a numpy string array, a JSON list, embed_images' classes JSON, or a text file with one per line
        names: File,
        /// labels of a dataset of these classes (e.g. ID train labels): checks that there is one name per class
        labels: Option<Npy>,
    }
}

op_ports! {
    pub struct Outputs {
        /// the prompts (numpy unicode array), name-major
        sentences: Npy,
        /// the class index of each prompt [S], int64
        labels: Npy,
    }
}

impl TypedOp for ClassPrompts {
    const NAME: &'static str = "class_prompts";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "class names through prompt templates (TOE's, CLIP's 80, the demo world's): sentences and their class indices";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let names = read_names(&i.names)?;
        if names.is_empty() {
            bail!("node {}: {} holds no class names", ctx.node, i.names.display());
        }
        if let Some(path) = &i.labels {
            let classes = read_labels(path)?.iter().max().map_or(0, |m| m + 1) as usize;
            if classes != names.len() {
                bail!(
                    "node {}: input `names` ({}) has {} names but input `labels` ({}) has {classes} classes; \
                     give one name per class, in label order",
                    ctx.node,
                    i.names.display(),
                    names.len(),
                    path.display()
                );
            }
        }
        let set = match p.templates {
            _ if !p.template.is_empty() => {
                if p.template.matches("{}").count() != 1 {
                    bail!(
                        "node {}: param template = {:?} must hold {{}} exactly once (where each name goes)",
                        ctx.node,
                        p.template
                    );
                }
                PromptSet::One(&p.template)
            }
            Templates::Toe => PromptSet::Toe,
            Templates::ClipImagenet => PromptSet::ClipImagenet,
            Templates::World => PromptSet::World,
        };
        let (sentences, labels) = class_prompts(&names, set);
        formats::write_strings(&o.sentences, &sentences)?;
        write_labels(&o.labels, &labels)?;
        println!("{} names x {} templates -> {} prompts", names.len(), sentences.len() / names.len(), sentences.len());
        Ok(())
    }
}
