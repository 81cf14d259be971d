//! `train_decoder`: train the word-level outlier decoder (a ZOC
//! BertGenerationDecoder with cross-attention to the CLIP image embedding)
//! to caption images of a COCO-style corpus, as the original's
//! `train_decoder.py` does on MS-COCO; the result is a decoder model folder
//! (see `crate::decoder::model_dir`) that `outliers_word` and
//! `caption_images` read.
//!
//! Steps: read the captions JSON; encode every captioned image once with
//! CLIP (CLIP's own preprocessing; raw `encode_image` features, not
//! normalised, as ZOC trains and TOE's `textual_outliers.py` generates);
//! hold out `val_fraction` of the images (with all their captions) for the
//! validation loss; build or load the tokenizer; train teacher-forced
//! (`crate::decoder::train_decoder`), keeping the epoch with the lowest
//! validation loss as ZOC does.
//!
//! The original (ZOC's `train_decoder.py`, which TOE uses) fine-tunes the
//! pre-trained `google/bert_for_seq_generation_L-24_bbc_encoder` (24 layers,
//! width 1024, 16 heads, sentencepiece vocabulary of 50358) on COCO 2017
//! train captions with AdamW lr 1e-5, batch 128, captions of at most 77
//! tokens; TOE's released checkpoint is `model_epoch100.pt` (100 epochs).
//! To do that here, connect `init` to a folder with that model (converted
//! to a ZOC checkpoint) and its `spiece.model`, and set `epochs = 100`,
//! `lr = 1e-5`, `batch_size = 128`, `max_len = 77`, `captions_json =
//! "annotations/captions_train2017.json"`, `image_dir = "train2017"`. The
//! defaults instead train a small decoder from scratch on the demo world's
//! corpus, with a word-level vocabulary built from its captions.

use std::path::PathBuf;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::prelude::*;
use super::shared::files::write_json;
use super::shared::params::{tch_device, Threads};
use crate::clip;
use crate::decoder::model_dir::{ModelTokenizer, DEFAULT_CHECKPOINT};
use crate::decoder::train::SplitMix;
use crate::decoder::{
    save_model_dir, train_decoder_with, BertGenerationDecoder, CaptionSet, DecoderConfig, DecoderDir,
    SentencePieceModel, TrainOptions, WordVocab,
};
use crate::formats::CaptionCorpus;
use crate::images::{BatchOptions, Batches, Sample};

pub struct TrainDecoder;

op_params! {
    pub struct Params {
        /// the COCO-style captions JSON inside the corpus (real COCO: annotations/captions_train2017.json)
        captions_json: String = "captions.json".into(),
        /// folder inside the corpus the JSON's file names are relative to (real COCO: train2017)
        image_dir: String = "images".into(),
        /// training epochs (original: 100, TOE's model_epoch100.pt; 20k demo pairs: ~40 s each on one busy CPU core)
        #[range(1..)]
        epochs: usize = 5,
        /// captions per step (original: 128)
        #[range(1..)]
        batch_size: usize = 64,
        /// AdamW learning rate (original: 1e-5, fine-tuning a pre-trained decoder; from scratch wants ~1e-3)
        lr: f64 = 1e-3,
        /// decoder width, a multiple of the CLIP embedding width (original: 1024); ignored with init
        #[range(1..)]
        hidden: i64 = 128,
        /// decoder layers (original: 24); ignored with init
        #[range(1..)]
        layers: i64 = 2,
        /// attention heads, dividing hidden (original: 16); ignored with init
        #[range(1..)]
        heads: i64 = 2,
        /// feed-forward width, 0 = 4 x hidden (original: 4096); ignored with init
        intermediate: u64 = 0,
        /// word-level vocabulary: keep words seen at least this often in the training captions (only without tokenizer and init)
        #[range(1..)]
        min_count: usize = 1,
        /// longest caption in tokens, BOS and EOS included; longer ones are cut (original: 77)
        #[range(2..)]
        max_len: i64 = 32,
        /// seeds the initialisation, the validation split, shuffling and dropout
        seed: i64 = 42,
        /// fraction of the images (with all their captions) held out for the validation loss; the epoch with the lowest one is kept (0 = keep the last)
        #[range(0.0..1.0)]
        val_fraction: f64 = 0.1,
        /// images per CLIP forward pass when embedding the corpus
        #[range(1..)]
        image_batch_size: usize = 128,
        /// checkpoint file inside init (the released one is model_epoch100.pt)
        init_checkpoint: String = DEFAULT_CHECKPOINT.into(),
        /// attention heads of init: 0 = from its config.json, else 16
        init_heads: usize = 0,
        /// reproduce the original loader's torch.tensor(clip_features, dtype=torch.long): every embedding value truncated to an integer (mostly 0) before training
        integer_embeddings: bool = false,
        threads: Threads,
    }
}

op_ports! {
    pub struct Inputs {
        /// CLIP checkpoint: OpenAI's TorchScript .pt, a state dict .pt or safetensors
        clip: Pt,
        /// COCO-style corpus: the captions JSON and the images
        corpus: Dir,
        /// a decoder model folder to fine-tune (its tokenizer and shape are used)
        init: Option<Dir>,
        /// a sentencepiece .model to use instead of a word vocabulary built from the captions
        tokenizer: Option<File>,
    }
}

op_ports! {
    pub struct Outputs {
        /// decoder model folder: model.pt ({'net': state_dict}), vocab.json or spiece.model, config.json
        model: Dir,
        /// loss per epoch (1-based), validation loss, the kept epoch, corpus sizes, timings
        log: Json,
    }
}

/// CLIP image features [N, D] (CPU, fp32, not normalised) of `paths`.
fn embed_images(model: &clip::LoadedClip, paths: &[PathBuf], batch_size: usize, dev: Device) -> Result<Tensor> {
    let samples: Vec<Sample> =
        paths.iter().enumerate().map(|(i, p)| Sample { path: p.clone(), label: i as i64 }).collect();
    let n_px = model.clip.config().image_resolution as usize;
    let batches = Batches::new(samples, BatchOptions { batch_size, n_px, ..Default::default() })?;
    let total = batches.total();
    let mut parts = Vec::new();
    let (mut done, mut last_report) = (0, Instant::now());
    tch::no_grad(|| -> Result<()> {
        for batch in batches {
            let batch = batch?;
            done += batch.labels.len();
            parts.push(
                model.clip.encode_image(&batch.images.to_device(dev))?.to_kind(Kind::Float).to_device(Device::Cpu),
            );
            if last_report.elapsed().as_secs() >= 10 {
                println!("CLIP features: {done} / {total} images");
                last_report = Instant::now();
            }
        }
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0))
}

/// Images held out for validation: `fraction` of them (at least one and
/// one fewer than all when the fraction is positive), chosen by `seed`.
fn split_images(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let n_val = if fraction <= 0.0 || n < 2 { 0 } else { ((n as f64 * fraction).round() as usize).clamp(1, n - 1) };
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix(seed ^ 0x5eed_0005_9717).shuffle(&mut order);
    let mut is_val = vec![false; n];
    for &i in order.iter().take(n_val) {
        is_val[i] = true;
    }
    is_val
}

impl TypedOp for TrainDecoder {
    const NAME: &'static str = "train_decoder";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "train the ZOC caption decoder on a COCO-style corpus from CLIP image embeddings (defaults: a small decoder for the demo world; the original fine-tunes BertGeneration L-24 on COCO 2017 for 100 epochs)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let dev = tch_device(ctx.device);
        let (epochs, max_len, seed) = (p.epochs, p.max_len, p.seed);
        p.threads.apply(ctx.device);

        let corpus = CaptionCorpus::open(&i.corpus, &p.captions_json, &p.image_dir)?;
        println!("corpus: {} images, {} captions", corpus.images.len(), corpus.captions.len());

        let started = Instant::now();
        let clip_model = clip::load(&i.clip, dev)?;
        let embeds = embed_images(&clip_model, &corpus.images, p.image_batch_size, dev)?;
        drop(clip_model);
        let embeds = if p.integer_embeddings { embeds.trunc() } else { embeds };
        let embed_seconds = started.elapsed().as_secs_f64();
        let clip_dim = embeds.size()[1];
        println!("CLIP features {:?} in {embed_seconds:.1}s", embeds.size());

        let is_val = split_images(corpus.images.len(), p.val_fraction, seed as u64);
        let (mut train_caps, mut val_caps) = (Vec::new(), Vec::new());
        for (i, &img) in corpus.image_of_caption.iter().enumerate() {
            if is_val[img] { &mut val_caps } else { &mut train_caps }.push(i);
        }

        // The model and its tokenizer: fine-tuned from init, or new.
        let (mut model, tokenizer) = match (&i.init, &i.tokenizer) {
            (Some(_), Some(_)) => {
                bail!("node {}: init brings its own tokenizer; leave the input `tokenizer` unconnected", ctx.node)
            }
            (Some(dir), None) => {
                let heads = (p.init_heads > 0).then_some(p.init_heads as i64);
                let opened = DecoderDir::open(dir, &p.init_checkpoint, heads, dev)?;
                if opened.model.kind() != Kind::Float {
                    bail!("node {}: init's weights are {:?}; training needs fp32", ctx.node, opened.model.kind());
                }
                (opened.model, opened.tokenizer)
            }
            (None, tok) => {
                let tokenizer = match tok {
                    Some(path) => ModelTokenizer::SentencePiece {
                        model: Box::new(SentencePieceModel::load(path)?),
                        file: path.clone(),
                    },
                    None => {
                        let texts: Vec<&str> = train_caps.iter().map(|&i| corpus.captions[i].as_str()).collect();
                        ModelTokenizer::Words(WordVocab::build(&texts, p.min_count))
                    }
                };
                let model = new_decoder(ctx, &p, tokenizer.as_dyn().vocab_size() as i64, clip_dim, dev)?;
                (model, tokenizer)
            }
        };
        let c = model.config().clone();
        if c.hidden_size % clip_dim != 0 {
            bail!(
                "node {}: the decoder width {} is not a multiple of the CLIP embedding width {clip_dim} (ZOC repeats the \
                 embedding to the decoder width); set `hidden` to a multiple of {clip_dim}",
                ctx.node,
                c.hidden_size
            );
        }
        if max_len > c.max_position_embeddings {
            bail!("node {}: max_len {max_len} exceeds the decoder's {} positions", ctx.node, c.max_position_embeddings);
        }
        println!(
            "decoder: {} layers, width {}, {} heads, vocabulary {} ({})",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.vocab_size,
            tokenizer.file_name()
        );

        let tok = tokenizer.as_dyn();
        let encode = |idx: &[usize]| -> Result<(Vec<Vec<i64>>, Vec<usize>)> {
            let ids = idx
                .iter()
                .map(|&i| tok.encode_caption(&corpus.captions[i], max_len as usize))
                .collect::<Result<_>>()?;
            Ok((ids, idx.iter().map(|&i| corpus.image_of_caption[i]).collect()))
        };
        let (train_ids, train_img) = encode(&train_caps)?;
        let (val_ids, val_img) = encode(&val_caps)?;
        let train_set = CaptionSet { clip_embeds: &embeds, captions: &train_ids, image_of_caption: &train_img };
        let val_set = CaptionSet { clip_embeds: &embeds, captions: &val_ids, image_of_caption: &val_img };
        let val = (!val_ids.is_empty()).then_some(&val_set);
        println!("{} training captions, {} validation captions", train_ids.len(), val_ids.len());

        let opts = TrainOptions {
            epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            max_len: max_len as usize,
            seed: seed as u64,
            keep_best: true,
            ..Default::default()
        };
        let train_started = Instant::now();
        let report = train_decoder_with(&mut model, &train_set, val, &opts, &mut |e| {
            let val = e.val_loss.map_or("-".to_string(), |v| format!("{v:.4}"));
            println!(
                "epoch {}/{epochs}: train loss {:.4}, val loss {val}, {:.1}s",
                e.epoch + 1,
                e.train_loss,
                e.seconds
            );
        })?;
        let train_seconds = train_started.elapsed().as_secs_f64();

        let kept = report.best_epoch.unwrap_or(report.epochs.len() - 1);
        let kept_val = report.epochs[kept].val_loss;
        save_model_dir(&o.model, &model, &tokenizer, clip_dim, kept, kept_val)?;
        println!("kept epoch {} (val loss {})", kept + 1, kept_val.map_or("-".into(), |v| format!("{v:.4}")));

        let epochs_log: Vec<serde_json::Value> = report
            .epochs
            .iter()
            .map(|e| serde_json::json!({ "epoch": e.epoch + 1, "train_loss": e.train_loss, "val_loss": e.val_loss, "seconds": e.seconds }))
            .collect();
        write_json(
            &o.log,
            &serde_json::json!({
                "epochs": epochs_log,
                "kept_epoch": kept + 1,
                "images": corpus.images.len(),
                "train_captions": train_ids.len(),
                "val_captions": val_ids.len(),
                "vocab_size": c.vocab_size,
                "tokenizer": tokenizer.file_name(),
                "clip_embed_dim": clip_dim,
                "embed_seconds": embed_seconds,
                "train_seconds": train_seconds,
            }),
        )
    }
}

/// A randomly initialised decoder of the shape the params give.
fn new_decoder(
    ctx: &OpContext,
    p: &Params,
    vocab_size: i64,
    clip_dim: i64,
    dev: Device,
) -> Result<BertGenerationDecoder> {
    let (hidden, layers, heads) = (p.hidden, p.layers, p.heads);
    if hidden % clip_dim != 0 {
        bail!(
            "node {}: hidden {hidden} is not a multiple of the CLIP embedding width {clip_dim} (ZOC repeats the \
             embedding to the decoder width); set `hidden` to a multiple of {clip_dim}",
            ctx.node
        );
    }
    if hidden % heads != 0 {
        bail!("node {}: hidden {hidden} is not a multiple of heads {heads}", ctx.node);
    }
    let intermediate = match p.intermediate {
        0 => 4 * hidden,
        v => v as i64,
    };
    let config = DecoderConfig {
        intermediate_size: intermediate,
        max_position_embeddings: p.max_len.max(128),
        ..DecoderConfig::small(vocab_size, hidden, layers, heads)
    };
    tch::manual_seed(p.seed);
    BertGenerationDecoder::new(config, dev).with_context(|| format!("node {}: building the decoder", ctx.node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_holds_out_a_seeded_fraction() {
        let a = split_images(50, 0.2, 3);
        assert_eq!(a.iter().filter(|&&v| v).count(), 10);
        assert_eq!(a, split_images(50, 0.2, 3));
        assert_eq!(split_images(5, 0.0, 3).iter().filter(|&&v| v).count(), 0);
        assert_eq!(split_images(3, 0.01, 3).iter().filter(|&&v| v).count(), 1);
        assert_eq!(split_images(3, 0.99, 3).iter().filter(|&&v| v).count(), 2);
    }
}
