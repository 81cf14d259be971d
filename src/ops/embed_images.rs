//! `embed_images`: CLIP image features of an ImageFolder dataset (features
//! `[N, D]` and labels `[N]`), decoded and preprocessed in parallel exactly
//! as CLIP's Python transform does, encoded once and cached: every later
//! stage (statistics, heads, evaluation) reads these arrays.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::embed_text::{inference_kind, precision_param};
use super::io::{device, write_features, write_json, write_labels};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::clip;
use crate::images::{BatchOptions, ImageFolder, ImagesError};
use crate::spec::{ArtifactKind, ParamValue};

pub struct EmbedImages;

impl Op for EmbedImages {
    fn name(&self) -> &'static str {
        "embed_images"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "CLIP image features [N, D] and labels of an ImageFolder dataset"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::with_default("batch_size", ParamType::Int, ParamValue::Int(64), "images per forward pass"),
            ParamSpec::with_default("threads", ParamType::Int, ParamValue::Int(0), "decoding threads (0 = all cores)"),
            ParamSpec::with_default("skip_unreadable", ParamType::Bool, ParamValue::Bool(false), "leave out files that cannot be decoded (counted in the log) instead of failing"),
            precision_param(),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("model", ArtifactKind::Pt, "CLIP checkpoint: OpenAI's TorchScript .pt, a state dict .pt or safetensors"),
            PortSpec::new("images", ArtifactKind::Dir, "ImageFolder: <root>/<class>/<image>"),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("features", ArtifactKind::Npy, "image features [N, D], float32, not normalised"),
            PortSpec::new("labels", ArtifactKind::Npy, "class index of each image [N], int64 (classes sorted by folder name)"),
            PortSpec::new("classes", ArtifactKind::Json, "the class folder names in label order, and skipped files"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let dev = device(&ctx.device);
        let mut model = clip::load(ctx.input("model")?, dev)?;
        let kind = inference_kind(ctx)?;
        if let Some(kind) = kind {
            model.set_kind(kind);
        }
        let folder = ImageFolder::open(ctx.input("images")?)?;
        let batch_size = ctx.param_i64("batch_size")?;
        if batch_size <= 0 {
            bail!("node {}: batch_size must be positive", ctx.node);
        }
        let options = BatchOptions {
            batch_size: batch_size as usize,
            n_px: model.clip.config().image_resolution as usize,
            threads: ctx.param_i64("threads")?.max(0) as usize,
            skip_unreadable: ctx.param_bool("skip_unreadable")?,
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
        write_features(ctx.output("features")?, &features)?;
        write_labels(ctx.output("labels")?, &labels)?;
        let skipped: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect();
        write_json(ctx.output("classes")?, &serde_json::json!({ "classes": folder.classes(), "skipped": skipped }))
    }
}
