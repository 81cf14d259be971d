//! `train_oe`: the linear head trained with cross-entropy on cached ID image
//! features plus, when outliers are connected, the outlier-exposure loss on
//! noisy text features. Without outliers it is the no-exposure baseline.

use anyhow::{bail, Result};
use serde::Serialize;
use tch::Tensor;

use super::io::{check_same_length, device, head_features, normalize_param, read_features, read_labels, write_json};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::train_head::{train_head, EpochLog, HeadConfig};

pub struct TrainOe;

#[derive(Serialize)]
struct TrainLog<'a> {
    exposure: bool,
    num_classes: i64,
    id_samples: i64,
    outlier_samples: i64,
    seed: i64,
    noise_var: f64,
    epochs: &'a [EpochLog],
}

impl Op for TrainOe {
    fn name(&self) -> &'static str {
        "train_oe"
    }
    fn version(&self) -> u32 {
        // Still 1 with the plain-Rust CPU steps: same draws from the same
        // seeded generator and the same maths, so heads agree to rounding.
        1
    }
    fn summary(&self) -> &'static str {
        "train Linear(D, C) on cached image features with CE + OE on noisy text outliers (no outliers = baseline)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let d = HeadConfig::default();
        vec![
            ParamSpec::with_default("epochs", ParamType::Int, ParamValue::Int(d.epochs as i64), "passes over the ID training features"),
            ParamSpec::with_default("batch_size", ParamType::Int, ParamValue::Int(d.batch_size as i64), "ID batch size"),
            ParamSpec::with_default("outlier_batch_size", ParamType::Int, ParamValue::Int(d.outlier_batch_size as i64), "outliers per ID batch"),
            ParamSpec::with_default("lr", ParamType::Float, ParamValue::Float(d.lr), "Adam learning rate"),
            ParamSpec::with_default("seed", ParamType::Int, ParamValue::Int(d.seed), "seed of initialisation, shuffling and noise"),
            ParamSpec::with_default("oe_weight", ParamType::Float, ParamValue::Float(d.oe_weight), "weight of the OE loss"),
            ParamSpec::with_default("noise_var", ParamType::Float, ParamValue::Float(d.noise_var), "variance of the noise added to normalised text features"),
            ParamSpec::with_default("num_classes", ParamType::Int, ParamValue::Int(0), "number of classes; 0 = largest label + 1"),
            normalize_param(),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("features", ArtifactKind::Npy, "ID train image features [N, D] (not normalised)"),
            PortSpec::new("labels", ArtifactKind::Npy, "their labels [N]"),
            PortSpec::new("outliers", ArtifactKind::Npy, "text features of the textual outliers [M, D]; leave out for the baseline").optional(),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("head", ArtifactKind::Pt, "state dict of nn.Linear(D, C): weight [C, D], bias [C]"),
            PortSpec::new("log", ArtifactKind::Json, "loss and ID train accuracy per epoch"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let features = head_features(ctx, ctx.input("features")?)?;
        let labels = read_labels(ctx.input("labels")?)?;
        check_same_length(&features, ctx.input("features")?, &labels, ctx.input("labels")?)?;
        let outliers = match ctx.input_list("outliers") {
            [] => None,
            [path] => Some(read_features(path)?),
            _ => bail!("node {}: connect one outlier feature file (concatenate sets upstream)", ctx.node),
        };
        let cfg = HeadConfig {
            epochs: ctx.param_positive("epochs")? as usize,
            batch_size: ctx.param_positive("batch_size")? as usize,
            outlier_batch_size: ctx.param_positive("outlier_batch_size")? as usize,
            lr: ctx.param_f64("lr")?,
            seed: ctx.param_i64("seed")?,
            oe_weight: ctx.param_f64("oe_weight")?,
            noise_var: ctx.param_f64("noise_var")?,
            device: device(&ctx.device),
        };
        if cfg.noise_var < 0.0 {
            bail!("node {}: noise_var must not be negative", ctx.node);
        }
        let num_classes = match ctx.param_i64("num_classes")? {
            0 => labels.iter().max().map_or(0, |m| m + 1),
            n => n,
        };
        let labels_t = Tensor::from_slice(&labels);
        let head = train_head(&features, &labels_t, outliers.as_ref(), num_classes, &cfg)?;
        formats::save_state_dict_pt(ctx.output("head")?, &[("weight".to_string(), head.weight), ("bias".to_string(), head.bias)])?;
        let last = head.log.last().expect("at least one epoch");
        println!("epoch {}: loss {:.4}, ID train accuracy {:.4}", last.epoch, last.loss, last.train_accuracy);
        write_json(
            ctx.output("log")?,
            &TrainLog {
                exposure: outliers.is_some(),
                num_classes,
                id_samples: features.size()[0],
                outlier_samples: outliers.as_ref().map_or(0, |o| o.size()[0]),
                seed: cfg.seed,
                noise_var: cfg.noise_var,
                epochs: &head.log,
            },
        )
    }
}
