//! `class_stats`: class-wise means and the shared precision matrix of ID
//! image features, written as the original's `.pt` files (bare tensors
//! `[C, D]` and `[D, D]`) so old and new tools can swap them.

use anyhow::{bail, Result};

use super::io::{check_same_length, read_features, read_labels};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::class_stats::class_stats;

pub struct ClassStats;

impl Op for ClassStats {
    fn name(&self) -> &'static str {
        "class_stats"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "class-wise means and shared precision of ID image features (the Mahalanobis statistics)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::with_default("max_count", ParamType::Int, ParamValue::Int(250), "at most this many images per class (the first ones)"),
            ParamSpec::with_default("normalize", ParamType::Bool, ParamValue::Bool(true), "L2-normalise features and class means"),
            ParamSpec::with_default("num_classes", ParamType::Int, ParamValue::Int(0), "number of classes; 0 = largest label + 1"),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("features", ArtifactKind::Npy, "ID train image features [N, D]"),
            PortSpec::new("labels", ArtifactKind::Npy, "their labels [N]"),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("means", ArtifactKind::Pt, "class means [C, D] (torch.save of a tensor)"),
            PortSpec::new("precision", ArtifactKind::Pt, "precision matrix [D, D] (torch.save of a tensor)"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let features = read_features(ctx.input("features")?)?;
        let labels = read_labels(ctx.input("labels")?)?;
        check_same_length(&features, ctx.input("features")?, &labels, ctx.input("labels")?)?;
        let max_count = ctx.param_i64("max_count")?;
        if max_count <= 0 {
            bail!("node {}: max_count must be positive", ctx.node);
        }
        let num_classes = match ctx.param_i64("num_classes")? {
            0 => labels.iter().max().map_or(0, |m| m + 1),
            n => n,
        };
        let stats = class_stats(&features, &labels, num_classes as usize, max_count as usize, ctx.param_bool("normalize")?)?;
        formats::save_tensor_pt(ctx.output("means")?, &stats.means)?;
        formats::save_tensor_pt(ctx.output("precision")?, &stats.precision)?;
        println!("{num_classes} classes, {}-d features", stats.means.size()[1]);
        Ok(())
    }
}
