//! `synthesize_outliers`: virtual outliers in a feature space, VOS-style
//! (Du et al., ICLR 2022): class-conditional Gaussians with one shared
//! covariance fitted to labelled features, many samples drawn per class,
//! the least likely kept. On image features it is the study's virtual
//! image cell; on the text features of each ID class's prompts
//! (`class_prompts` + `embed_text`), its virtual text cell.
//!
//! Defaults from VOS: 10,000 samples per class (`sample_from`) and a ridge
//! of 1e-4 on the covariance. VOS keeps the single least likely sample per
//! class at every training step, drawing afresh each time; drawn once here,
//! the 100 least likely of 10,000 per class (the 1 % tail) make an outlier
//! set of 100 per class that the usual `train_oe` consumes. A less extreme
//! tail than VOS's per-step minimum, chosen so that the outlier set has as
//! many points per class as a few batches; `keep_per_class` moves it.

use super::prelude::*;
use super::shared::files::{check_same_length, read_features, read_labels, write_features, write_labels};
use crate::toe::vos::{synthesize, VosConfig};

pub struct SynthesizeOutliers;

op_params! {
    pub struct Params {
        /// samples drawn per class (VOS's sample_from)
        #[range(1..)]
        samples_per_class: usize = 10000,
        /// the least likely samples kept per class; at most samples_per_class
        #[range(1..)]
        keep_per_class: usize = 100,
        /// added to the diagonal of the shared covariance (VOS: 1e-4)
        #[range(0.0..)]
        ridge: f64 = 1e-4,
        /// seed of the draws
        seed: i64 = 0,
        /// L2-normalise the features before fitting (text features: as TOE's outliers are normalised before the head sees them)
        normalize: bool = false,
        /// number of classes; 0 = largest label + 1
        num_classes: usize = 0,
    }
}

op_ports! {
    pub struct Inputs {
        /// labelled features [N, D]: ID image features, or text features of ID class prompts
        features: Npy,
        /// their classes [N]
        labels: Npy,
    }
}

op_ports! {
    pub struct Outputs {
        /// the kept samples [C * keep_per_class, D], class-major
        features: Npy,
        /// the class each was drawn for
        labels: Npy,
    }
}

impl TypedOp for SynthesizeOutliers {
    const NAME: &'static str = "synthesize_outliers";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "VOS-style virtual outliers: the least likely samples of class-conditional Gaussians fitted to features";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        if p.keep_per_class > p.samples_per_class {
            bail!(
                "node {}: param keep_per_class = {} is more than samples_per_class = {}; keep at most as many as are \
                 drawn",
                ctx.node,
                p.keep_per_class,
                p.samples_per_class
            );
        }
        let mut features = read_features(&i.features)?;
        if p.normalize {
            features = &features / features.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        }
        let labels = read_labels(&i.labels)?;
        check_same_length(&features, &i.features, &labels, &i.labels)?;
        if labels.is_empty() {
            bail!("node {}: input `features` ({}) has no rows", ctx.node, i.features.display());
        }
        let num_classes = match p.num_classes {
            0 => labels.iter().max().map_or(0, |m| m + 1) as usize,
            n => n,
        };
        let cfg = VosConfig {
            samples_per_class: p.samples_per_class,
            keep_per_class: p.keep_per_class,
            ridge: p.ridge,
            seed: p.seed,
        };
        let out = synthesize(&features, &labels, num_classes, &cfg)
            .with_context(|| format!("node {}: synthesising from {}", ctx.node, i.features.display()))?;
        write_features(&o.features, &out.features)?;
        write_labels(&o.labels, &out.labels)?;
        println!(
            "{num_classes} classes, {}-d: kept {} of {} samples per class",
            features.size()[1],
            p.keep_per_class,
            p.samples_per_class
        );
        Ok(())
    }
}
