//! `train_clip`: contrastive pre-training of a small CLIP (OpenAI's
//! architecture: the ModifiedResNet image tower and the causal text
//! transformer, CLIP's BPE tokenizer) on a COCO-style caption corpus. The
//! demo world trains its own CLIP this way because no released weights can
//! be downloaded; the real pipelines load OpenAI's checkpoints instead.
//!
//! The checkpoint is a `torch.save` state dict with OpenAI's tensor names, so
//! `embed_images`, `embed_text` and OpenAI's `clip.model.build_model` load
//! it like a released model (heads follow OpenAI's rules: text `width / 64`,
//! at least one; image tower `width * 32 / 64`).

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use super::prelude::*;
use super::shared::files::write_json;
use super::shared::params::tch_device;
use crate::clip::train::{train_contrastive, zero_shot_accuracy, ContrastiveOptions, Pairs, StepLog};
use crate::clip::{Clip, ClipConfig, ResNetConfig, TextConfig, Tokenizer, VisionConfig};
use crate::formats::{self, CaptionCorpus};
use crate::images::{BatchOptions, Batches, ImageFolder, Sample};

pub struct TrainClip;

op_params! {
    pub struct Params {
        /// the captions file, relative to the corpus folder
        captions_json: String = "captions.json".into(),
        /// the folder of the images that `file_name` is relative to, inside the corpus folder
        image_dir: String = "images".into(),
        /// side of the model's square input; images are resized and centre-cropped to it
        #[range(1..)]
        image_resolution: i64 = 32,
        /// size of the joint embedding
        #[range(1..)]
        embed_dim: i64 = 64,
        /// ModifiedResNet width (the stem's channels; the last stage has 32 x width)
        #[range(1..)]
        width: i64 = 8,
        /// bottleneck blocks in each of the four ResNet stages
        #[range(1..)]
        layers: Vec<i64> = vec![1; 4],
        /// width of the text transformer
        #[range(1..)]
        text_width: i64 = 64,
        /// layers of the text transformer
        #[range(1..)]
        text_layers: i64 = 2,
        /// token positions of the text tower; longer captions are cut
        #[range(1..)]
        context_length: i64 = 32,
        /// optimiser steps
        #[range(1..)]
        steps: usize = ContrastiveOptions::default().steps,
        /// pairs per step (the contrastive loss compares every pair of a batch)
        #[range(1..)]
        batch_size: usize = ContrastiveOptions::default().batch_size,
        /// peak learning rate (AdamW, linear warm-up, cosine decay)
        lr: f64 = ContrastiveOptions::default().lr,
        /// the text tower's peak learning rate as a fraction of `lr` (the image tower and temperature use `lr`)
        #[range(0.0..)]
        text_lr_factor: f64 = ContrastiveOptions::default().text_lr_factor,
        /// warm-up steps
        warmup: usize = ContrastiveOptions::default().warmup,
        /// AdamW weight decay of matrices and convolutions
        weight_decay: f64 = ContrastiveOptions::default().weight_decay,
        /// seed of initialisation and batch order
        seed: i64 = ContrastiveOptions::default().seed,
        /// prompt for the zero-shot check on the `zero_shot` images ({} = class folder name)
        zero_shot_prompt: String = "a photo of a {}".into(),
    }
}

op_ports! {
    pub struct Inputs {
        /// COCO-style corpus: a captions JSON and a folder of images
        corpus: Dir,
        /// ImageFolder to report zero-shot accuracy on after training (e.g. ID val)
        zero_shot: Option<Dir>,
    }
}

op_ports! {
    pub struct Outputs {
        /// state dict with OpenAI's CLIP tensor names
        model: Pt,
        /// loss, in-batch accuracy and temperature over training; zero-shot accuracy
        log: Json,
    }
}

/// CLIP's BPE vocabulary size (49408: 256 bytes x 2, 48894 merges, two
/// special tokens).
const BPE_VOCAB: i64 = 49408;

#[derive(Serialize)]
struct TrainLog {
    pairs: usize,
    images: usize,
    parameters: i64,
    seconds: f64,
    zero_shot_accuracy: Option<f64>,
    zero_shot_classes: Vec<String>,
    steps: Vec<StepLog>,
}

impl TypedOp for TrainClip {
    const NAME: &'static str = "train_clip";
    // 2: convolutions start as PyTorch's do (they started 2.45x wider).
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "contrastively pre-train a small ResNet CLIP on a COCO-style caption corpus (the demo world's CLIP)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let started = Instant::now();
        let dev = tch_device(ctx.device);
        let Ok(layers) = <[i64; 4]>::try_from(p.layers.as_slice()) else {
            bail!("node {}: `layers` needs four stage depths (like [1, 1, 1, 1]), got {:?}", ctx.node, p.layers);
        };
        let (width, text_width, resolution) = (p.width, p.text_width, p.image_resolution);
        if resolution % 32 != 0 {
            bail!(
                "node {}: image_resolution must be a multiple of 32 (the ResNet downsamples 32x), got {resolution}",
                ctx.node
            );
        }
        let config = ClipConfig {
            embed_dim: p.embed_dim,
            image_resolution: resolution,
            vision: VisionConfig::ResNet(ResNetConfig { layers, width, heads: (width * 32 / 64).max(1) }),
            text: TextConfig {
                context_length: p.context_length,
                vocab_size: BPE_VOCAB,
                width: text_width,
                heads: (text_width / 64).max(1),
                layers: p.text_layers,
            },
        };
        let options = ContrastiveOptions {
            steps: p.steps,
            batch_size: p.batch_size,
            lr: p.lr,
            text_lr_factor: p.text_lr_factor,
            warmup: p.warmup,
            weight_decay: p.weight_decay,
            seed: p.seed,
        };

        let corpus = CaptionCorpus::open(&i.corpus, &p.captions_json, &p.image_dir)?;
        let images = load_images(&corpus.images, resolution as usize)?;
        let tokenizer = Tokenizer::new()?;
        let tokens = trim_padding(&tokenizer.tokenize(&corpus.captions, config.text.context_length as usize, true)?);
        let image_of_text: Vec<i64> = corpus.image_of_caption.iter().map(|&i| i as i64).collect();
        println!(
            "{} captions of {} images loaded in {:.1}s; longest caption {} tokens",
            corpus.captions.len(),
            corpus.images.len(),
            started.elapsed().as_secs_f64(),
            tokens.size()[1]
        );

        // The initial weights are drawn on the CPU and then moved, so a
        // seed gives one starting model on every device. Drawn on CUDA they
        // come from CUDA's generator, other numbers, and this small CLIP's
        // training depended on its start (with version 1's recipe, five
        // CPU seeds reached losses 2.93-4.04 after 1000 of 2000 steps, while
        // a run on an H200 with a CUDA-drawn start stayed on the early
        // plateau). examples/gpu_check.rs compares the devices.
        tch::manual_seed(options.seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Clip::new(&vs.root(), &config);
        vs.set_device(dev);
        let parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        println!(
            "training a CLIP of {parameters} parameters for {} steps of {} pairs",
            options.steps, options.batch_size
        );
        let train_start = Instant::now();
        let steps = options.steps;
        let pairs = Pairs { images: &images, tokens: &tokens, image_of_text: &image_of_text };
        let log = train_contrastive(&model, &vs, &pairs, &options, (steps / 20).max(1), |r| {
            let elapsed = train_start.elapsed().as_secs_f64();
            let eta = elapsed / r.step as f64 * (steps - r.step) as f64;
            println!(
                "step {}/{steps}: loss {:.3}, in-batch accuracy {:.3}, temperature {:.4} ({elapsed:.0}s, {eta:.0}s left)",
                r.step, r.loss, r.batch_accuracy, r.temperature
            );
        })?;
        drop(images);

        let (zero_shot_accuracy, zero_shot_classes) = match &i.zero_shot {
            None => (None, Vec::new()),
            Some(root) => {
                let folder = ImageFolder::open(root)?;
                let classes = folder.classes().to_vec();
                let prompts: Vec<String> = classes.iter().map(|c| p.zero_shot_prompt.replace("{}", c)).collect();
                let prompt_tokens = tokenizer.tokenize(&prompts, config.text.context_length as usize, true)?;
                let (images, labels) = load_folder(&folder, resolution as usize)?;
                let accuracy = zero_shot_accuracy(&model, &images, &labels, &prompt_tokens)?;
                println!("zero-shot accuracy on {} ({} classes): {accuracy:.3}", root.display(), classes.len());
                (Some(accuracy), classes)
            }
        };

        // Sorted by name: `variables()` is a hash map, whose order changes
        // from process to process, and so did the file's bytes (and with
        // them the content hash that the store's early cut-off compares).
        let mut named: Vec<(String, Tensor)> =
            vs.variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        formats::save_state_dict_pt(&o.model, &named)?;
        write_json(
            &o.log,
            &TrainLog {
                pairs: corpus.captions.len(),
                images: corpus.images.len(),
                parameters,
                seconds: started.elapsed().as_secs_f64(),
                zero_shot_accuracy,
                zero_shot_classes,
                steps: log,
            },
        )
    }
}

/// Drops the all-padding columns at the end (every caption is shorter than
/// the context), which the causal text tower never needs to see.
fn trim_padding(tokens: &Tensor) -> Tensor {
    let used = tokens.ne(0).any_dim(0, false);
    let last = Vec::<bool>::try_from(&used).unwrap_or_default().iter().rposition(|&u| u).map_or(1, |i| i + 1);
    tokens.narrow(1, 0, last as i64).contiguous()
}

/// Decodes and preprocesses every image (CLIP's transform) into one tensor.
fn load_images(paths: &[std::path::PathBuf], n_px: usize) -> Result<Tensor> {
    let samples = paths.iter().map(|p| Sample { path: p.clone(), label: 0 }).collect();
    collect_batches(Batches::new(samples, BatchOptions { batch_size: 1024, n_px, ..Default::default() })?)
        .map(|(t, _)| t)
}

fn load_folder(folder: &ImageFolder, n_px: usize) -> Result<(Tensor, Vec<i64>)> {
    collect_batches(folder.batches(BatchOptions { batch_size: 1024, n_px, ..Default::default() })?)
}

fn collect_batches(batches: Batches) -> Result<(Tensor, Vec<i64>)> {
    let (mut parts, mut labels) = (Vec::new(), Vec::new());
    for batch in batches {
        let batch = batch?;
        parts.push(batch.images.to_kind(Kind::Float));
        labels.extend(batch.labels);
    }
    Ok((Tensor::cat(&parts, 0), labels))
}
