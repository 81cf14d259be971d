//! `mahalanobis_select`: score text (or image) features against the ID class
//! statistics and keep the least ID-like fraction: the original's
//! `caption_select.py`, which writes the caption index file.

use tch::Tensor;

use super::prelude::*;
use super::shared::files::read_features;
use crate::formats;
use crate::toe::mahalanobis::{centre_on_image_modality, lowest_fraction, mahalanobis_scores};
use crate::toe::outlier_text::unique;

pub struct MahalanobisSelect;

op_params! {
    pub struct Params {
        /// fraction to keep, lowest scores first
        #[range(0.0..=1.0)]
        ratio: f64 = 0.15,
        /// shift text features onto the image modality before scoring (off in the original; without it the filter keeps plain ID captions)
        centre_modalities: bool = false,
    }
}

op_ports! {
    pub struct Inputs {
        /// features of the candidates [N, D], e.g. CLIP text features of captions
        features: Npy,
        /// the N candidate strings
        strings: Npy,
        /// class means [C, D]
        means: Pt,
        /// precision [D, D]
        precision: Pt,
    }
}

op_ports! {
    pub struct Outputs {
        /// indices of the kept strings, ascending score (int64)
        index: Npy,
        /// the unique kept strings, in index order
        selected: Npy,
        /// the score of every candidate (float32)
        scores: Npy,
    }
}

impl TypedOp for MahalanobisSelect {
    const NAME: &'static str = "mahalanobis_select";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "keep the lowest-Mahalanobis-score fraction of strings (caption-level outlier selection)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let features = read_features(&i.features)?;
        let strings = formats::read_strings(&i.strings)?;
        if strings.len() as i64 != features.size()[0] {
            bail!(
                "node {}: {} strings but {} feature rows; the features must be of these strings, in order",
                ctx.node,
                strings.len(),
                features.size()[0]
            );
        }
        let means = formats::load_tensor_pt(&i.means)?;
        let precision = formats::load_tensor_pt(&i.precision)?;
        let features = if p.centre_modalities { centre_on_image_modality(&features, &means) } else { features };
        let scores = mahalanobis_scores(&features, &means, &precision)?;
        let index = lowest_fraction(&scores, p.ratio)?;
        let kept: Vec<String> = index.iter().map(|&i| strings[i as usize].trim_end_matches('\n').to_string()).collect();
        let selected = unique(&kept);
        formats::write_npy_tensor(&o.index, &Tensor::from_slice(&index))?;
        formats::write_npy_tensor(&o.scores, &Tensor::from_slice(&scores))?;
        formats::write_strings(&o.selected, &selected)?;
        println!("kept {} of {} ({} unique)", index.len(), strings.len(), selected.len());
        Ok(())
    }
}
