//! `embed_images`: CLIP image features of an ImageFolder dataset (features
//! `[N, D]` and labels `[N]`), decoded and preprocessed in parallel exactly
//! as CLIP's Python transform does, encoded once and cached: every later
//! stage (statistics, heads, evaluation) reads these arrays.

use tch::{Kind, Tensor};

use super::prelude::*;
use super::shared::files::{write_features, write_json, write_labels};
use super::shared::params::{tch_device, InferencePrecision};
use crate::clip;
use crate::images::{BatchOptions, ImageFolder, ImagesError};

pub struct EmbedImages;

op_params! {
    pub struct Params {
        /// images per forward pass
        #[range(1..)]
        batch_size: usize = 64,
        /// decoding threads (0 = the node's CPUs, `resources.cpus`)
        threads: usize = 0,
        /// leave out files that cannot be decoded (counted in the log) instead of failing
        skip_unreadable: bool = false,
        precision: InferencePrecision,
    }
}

op_ports! {
    pub struct Inputs {
        /// CLIP checkpoint: OpenAI's TorchScript .pt, a state dict .pt or safetensors
        model: Pt,
        /// ImageFolder: <root>/<class>/<image>
        images: Dir,
    }
}

op_ports! {
    pub struct Outputs {
        /// image features [N, D], float32, not normalised
        features: Npy,
        /// class index of each image [N], int64 (classes sorted by folder name)
        labels: Npy,
        /// the class folder names in label order, and skipped files
        classes: Json,
    }
}

impl TypedOp for EmbedImages {
    const NAME: &'static str = "embed_images";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "CLIP image features [N, D] and labels of an ImageFolder dataset";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let dev = tch_device(ctx.device);
        let mut model = clip::load(&i.model, dev)?;
        let kind = p.precision.kind(ctx.device);
        if let Some(kind) = kind {
            model.set_kind(kind);
        }
        let folder = ImageFolder::open(&i.images)?;
        let options = BatchOptions {
            batch_size: p.batch_size,
            n_px: model.clip.config().image_resolution as usize,
            threads: p.threads,
            skip_unreadable: p.skip_unreadable,
            ..Default::default()
        };
        let mut batches = folder.batches(options)?;
        let total = batches.total();
        let (mut parts, mut labels) = (Vec::new(), Vec::new());
        let mut last_report = std::time::Instant::now();
        for batch in &mut batches {
            let batch = batch.map_err(|e| match e {
                ImagesError::Decode { .. } => anyhow::anyhow!(
                    "{e}\n  fix: replace or remove the file, or set params.skip_unreadable = true on node {} to leave unreadable files out",
                    ctx.node
                ),
                e => e.into(),
            })?;
            let mut images = batch.images.to_device(dev);
            if let Some(kind) = kind {
                images = images.to_kind(kind);
            }
            parts.push(model.clip.encode_image(&images)?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
            labels.extend(batch.labels);
            if last_report.elapsed().as_secs() >= 10 {
                println!("{} / {total} images", labels.len());
                last_report = std::time::Instant::now();
            }
        }
        let skipped = batches.skipped();
        if parts.is_empty() {
            bail!("node {}: no image could be read from {}", ctx.node, folder.root().display());
        }
        let features = Tensor::cat(&parts, 0);
        println!("{} images -> {:?}; {} skipped", labels.len(), features.size(), skipped.len());
        write_features(&o.features, &features)?;
        write_labels(&o.labels, &labels)?;
        let skipped: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect();
        write_json(&o.classes, &serde_json::json!({ "classes": folder.classes(), "skipped": skipped }))
    }
}
