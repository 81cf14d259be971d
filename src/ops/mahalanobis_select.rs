//! `mahalanobis_select`: score text (or image) features against the ID class
//! statistics and keep the least ID-like fraction: the original's
//! `caption_select.py`, which writes the caption index file.

use anyhow::{bail, Result};
use tch::Tensor;

use super::io::read_features;
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::mahalanobis::{centre_on_image_modality, lowest_fraction, mahalanobis_scores};
use crate::toe::outlier_text::unique;

pub struct MahalanobisSelect;

impl Op for MahalanobisSelect {
    fn name(&self) -> &'static str {
        "mahalanobis_select"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "keep the lowest-Mahalanobis-score fraction of strings (caption-level outlier selection)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::with_default("ratio", ParamType::Float, ParamValue::Float(0.15), "fraction to keep, lowest scores first"),
            ParamSpec::with_default(
                "centre_modalities",
                ParamType::Bool,
                ParamValue::Bool(false),
                "shift text features onto the image modality before scoring (off in the original; without it the filter keeps plain ID captions)",
            ),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("features", ArtifactKind::Npy, "features of the candidates [N, D], e.g. CLIP text features of captions"),
            PortSpec::new("strings", ArtifactKind::Npy, "the N candidate strings"),
            PortSpec::new("means", ArtifactKind::Pt, "class means [C, D]"),
            PortSpec::new("precision", ArtifactKind::Pt, "precision [D, D]"),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("index", ArtifactKind::Npy, "indices of the kept strings, ascending score (int64)"),
            PortSpec::new("selected", ArtifactKind::Npy, "the unique kept strings, in index order"),
            PortSpec::new("scores", ArtifactKind::Npy, "the score of every candidate (float32)"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let features = read_features(ctx.input("features")?)?;
        let strings = formats::read_strings(ctx.input("strings")?)?;
        if strings.len() as i64 != features.size()[0] {
            bail!(
                "node {}: {} strings but {} feature rows; the features must be of these strings, in order",
                ctx.node,
                strings.len(),
                features.size()[0]
            );
        }
        let means = formats::load_tensor_pt(ctx.input("means")?)?;
        let precision = formats::load_tensor_pt(ctx.input("precision")?)?;
        let features = if ctx.param_bool("centre_modalities")? { centre_on_image_modality(&features, &means) } else { features };
        let scores = mahalanobis_scores(&features, &means, &precision)?;
        let index = lowest_fraction(&scores, ctx.param_f64("ratio")?)?;
        let kept: Vec<String> = index.iter().map(|&i| strings[i as usize].trim_end_matches('\n').to_string()).collect();
        let selected = unique(&kept);
        formats::write_npy_tensor(ctx.output("index")?, &Tensor::from_slice(&index))?;
        formats::write_npy_tensor(ctx.output("scores")?, &Tensor::from_slice(&scores))?;
        formats::write_strings(ctx.output("selected")?, &selected)?;
        println!("kept {} of {} ({} unique)", index.len(), strings.len(), selected.len());
        Ok(())
    }
}
