//! `train_oe`: the linear head trained with cross-entropy on cached ID image
//! features plus, when outliers are connected, the outlier-exposure loss on
//! noisy text features. Without outliers it is the no-exposure baseline.

use serde::Serialize;
use tch::Tensor;

use super::prelude::*;
use super::shared::files::{check_same_length, read_features, read_labels, write_json};
use super::shared::params::{tch_device, NormalizeFeatures};
use crate::formats;
use crate::toe::train_head::{train_head, EpochKind, EpochLog, HeadConfig, OutlierDomain};

pub struct TrainOe;

toe_pipe_core::param_enum! {
    /// Which embedding space the outliers come from.
    pub enum Domain {
        /// CLIP text features (TOE's outliers; real or synthesised in text space)
        Text = "text",
        /// image features (an auxiliary image dataset, or samples synthesised among the image features)
        Image = "image"
    }
}

op_params! {
    pub struct Params {
        /// passes over the ID training features
        #[range(1..)]
        epochs: usize = HeadConfig::default().epochs,
        /// ID batch size
        #[range(1..)]
        batch_size: usize = HeadConfig::default().batch_size,
        /// outliers per ID batch
        #[range(1..)]
        outlier_batch_size: usize = HeadConfig::default().outlier_batch_size,
        /// Adam learning rate
        lr: f64 = HeadConfig::default().lr,
        /// seed of initialisation, shuffling and noise
        seed: i64 = HeadConfig::default().seed,
        /// weight of the OE loss
        oe_weight: f64 = HeadConfig::default().oe_weight,
        /// variance of the noise added to normalised text features
        #[range(0.0..)]
        noise_var: f64 = HeadConfig::default().noise_var,
        /// number of classes; 0 = largest label + 1
        num_classes: usize = 0,
        /// text: outliers are L2-normalised, noised (noise_var) and normalised again (TOE's bridge over the modality gap); image: fed as the ID features are (normalize_features applies, no noise)
        outlier_domain: Domain = Domain::Text,
        /// an epoch as the original counts it, zip(ID loader, outlier loader): it ends with the shorter, so few outliers see few ID images; false: one pass over the ID set with the outliers cycling
        zip_epoch: bool = true,
        normalize: NormalizeFeatures,
    }
}

op_ports! {
    pub struct Inputs {
        /// ID train image features [N, D] (not normalised)
        features: Npy,
        /// their labels [N]
        labels: Npy,
        /// outlier features [M, D] (text features for TOE; see outlier_domain); leave out for the baseline
        outliers: Option<Npy>,
    }
}

op_ports! {
    pub struct Outputs {
        /// state dict of nn.Linear(D, C): weight [C, D], bias [C]
        head: Pt,
        /// loss and ID train accuracy per epoch
        log: Json,
    }
}

#[derive(Serialize)]
struct TrainLog<'a> {
    exposure: bool,
    num_classes: i64,
    id_samples: i64,
    outlier_samples: i64,
    seed: i64,
    noise_var: f64,
    zip_epoch: bool,
    outlier_domain: &'static str,
    epochs: &'a [EpochLog],
}

impl TypedOp for TrainOe {
    const NAME: &'static str = "train_oe";
    // 2: the zip epoch became the default (the new `zip_epoch` param
    // changes every key anyway; the bump says why results changed).
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "train Linear(D, C) on cached image features with CE + OE on noisy text outliers (no outliers = baseline)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let features = p.normalize.read(&i.features)?;
        let labels = read_labels(&i.labels)?;
        check_same_length(&features, &i.features, &labels, &i.labels)?;
        let outliers = match (i.outliers.as_deref(), p.outlier_domain) {
            (None, _) => None,
            (Some(path), Domain::Text) => Some(read_features(path)?),
            // image-space outliers must look to the head as ID features do
            (Some(path), Domain::Image) => Some(p.normalize.read(path)?),
        };
        let cfg = HeadConfig {
            epochs: p.epochs,
            batch_size: p.batch_size,
            outlier_batch_size: p.outlier_batch_size,
            lr: p.lr,
            seed: p.seed,
            oe_weight: p.oe_weight,
            noise_var: p.noise_var,
            epoch: if p.zip_epoch { EpochKind::Zip } else { EpochKind::Cycle },
            outlier_domain: match p.outlier_domain {
                Domain::Text => OutlierDomain::Text,
                Domain::Image => OutlierDomain::Image,
            },
            device: tch_device(ctx.device),
        };
        let num_classes = match p.num_classes {
            0 => labels.iter().max().map_or(0, |m| m + 1),
            n => n as i64,
        };
        let labels_t = Tensor::from_slice(&labels);
        let head = train_head(&features, &labels_t, outliers.as_ref(), num_classes, &cfg)?;
        formats::save_state_dict_pt(&o.head, &[("weight".to_string(), head.weight), ("bias".to_string(), head.bias)])?;
        let last = head.log.last().expect("at least one epoch");
        println!(
            "epoch {}: {} steps, loss {:.4}, ID train accuracy {:.4}",
            last.epoch, last.steps, last.loss, last.train_accuracy
        );
        write_json(
            &o.log,
            &TrainLog {
                exposure: outliers.is_some(),
                num_classes,
                id_samples: features.size()[0],
                outlier_samples: outliers.as_ref().map_or(0, |o| o.size()[0]),
                seed: cfg.seed,
                noise_var: cfg.noise_var,
                zip_epoch: p.zip_epoch,
                outlier_domain: p.outlier_domain.name(),
                epochs: &head.log,
            },
        )
    }
}
