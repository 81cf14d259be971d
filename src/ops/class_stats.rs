//! `class_stats`: class-wise means and the shared precision matrix of ID
//! image features, written as the original's `.pt` files (bare tensors
//! `[C, D]` and `[D, D]`) so old and new tools can swap them.

use super::prelude::*;
use super::shared::files::{check_same_length, read_features, read_labels};
use crate::formats;
use crate::toe::class_stats::{class_stats, class_stats_as_released};

pub struct ClassStats;

op_params! {
    pub struct Params {
        /// at most this many images per class (the first ones)
        #[range(1..)]
        max_count: usize = 250,
        /// L2-normalise features and class means
        normalize: bool = true,
        /// number of classes; 0 = largest label + 1
        num_classes: usize = 0,
        /// reproduce the original's get_mean_prec as caption_select.py runs it: every image (max_count unused), class means indexed by batch number in a shuffled loader of 32, only the first 100 classes' means
        original_indexing: bool = false,
        /// seed of the shuffled loader order that original_indexing uses (the original's is unseeded)
        loader_seed: i64 = 0,
    }
}

op_ports! {
    pub struct Inputs {
        /// ID train image features [N, D]
        features: Npy,
        /// their labels [N]
        labels: Npy,
    }
}

op_ports! {
    pub struct Outputs {
        /// class means [C, D] (torch.save of a tensor)
        means: Pt,
        /// precision matrix [D, D] (torch.save of a tensor)
        precision: Pt,
    }
}

impl TypedOp for ClassStats {
    const NAME: &'static str = "class_stats";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "class-wise means and shared precision of ID image features (the Mahalanobis statistics)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, _: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let features = read_features(&i.features)?;
        let labels = read_labels(&i.labels)?;
        check_same_length(&features, &i.features, &labels, &i.labels)?;
        let num_classes = match p.num_classes {
            0 => labels.iter().max().map_or(0, |m| m + 1) as usize,
            n => n,
        };
        let stats = if p.original_indexing {
            // The original's `-b` default: its batch numbers are the indices.
            const ORIGINAL_BATCH_SIZE: usize = 32;
            class_stats_as_released(&features, &labels, num_classes, p.normalize, ORIGINAL_BATCH_SIZE, p.loader_seed)?
        } else {
            class_stats(&features, &labels, num_classes, p.max_count, p.normalize)?
        };
        formats::save_tensor_pt(&o.means, &stats.means)?;
        formats::save_tensor_pt(&o.precision, &stats.precision)?;
        println!("{num_classes} classes ({} means), {}-d features", stats.means.size()[0], stats.means.size()[1]);
        Ok(())
    }
}
