//! Training the decoder: it learns a toy caption world from scratch, the
//! loss equals Hugging Face's shifted LM loss, training is seeded, and a
//! saved model fine-tunes with validation keeping the best epoch.

use crate::decoder_common;

use std::path::Path;

use tch::{Device, Kind, Tensor};
use toe_pipe::decoder::{
    evaluate_loss, generate_topk, load_decoder, outlier_words, save_decoder, train_decoder, BertGenerationDecoder,
    CaptionSet, DecoderConfig, DecoderTokenizer, GenerateOptions, TrainOptions, WordVocab,
};

const COLOURS: [&str; 4] = ["red", "blue", "green", "yellow"];
const SHAPES: [&str; 4] = ["star", "circle", "square", "triangle"];

/// 16 "images" (random 16-d embeddings), each with 3 phrasings of its caption.
fn toy_world() -> (Tensor, Vec<String>, Vec<usize>) {
    tch::manual_seed(11);
    let embeds = Tensor::randn([16, 16], (Kind::Float, Device::Cpu));
    let mut captions = Vec::new();
    let mut image = Vec::new();
    for (i, (c, s)) in COLOURS.iter().flat_map(|c| SHAPES.iter().map(move |s| (c, s))).enumerate() {
        for text in [format!("a {c} {s}"), format!("a {c} {s}"), format!("A {c} {s}.")] {
            captions.push(text);
            image.push(i);
        }
    }
    (embeds, captions, image)
}

fn tiny_model(vocab: &WordVocab, seed: i64) -> BertGenerationDecoder {
    tch::manual_seed(seed);
    let config =
        DecoderConfig { max_position_embeddings: 16, ..DecoderConfig::small(vocab.vocab_size() as i64, 32, 2, 2) };
    BertGenerationDecoder::new(config, Device::Cpu).unwrap()
}

fn opts(epochs: usize) -> TrainOptions {
    TrainOptions { epochs, batch_size: 8, lr: 3e-3, max_len: 12, seed: 5, ..Default::default() }
}

#[test]
fn learns_a_toy_caption_world_from_scratch() {
    let _rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let ids: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    let set = CaptionSet { clip_embeds: &embeds, captions: &ids, image_of_caption: &image };
    let mut model = tiny_model(&vocab, 0);
    let before = evaluate_loss(&model, &set, 64).unwrap();
    let report = train_decoder(&mut model, &set, None, &opts(40)).unwrap();
    let after = evaluate_loss(&model, &set, 64).unwrap();
    assert_eq!(report.epochs.len(), 40);
    assert!(report.epochs[39].train_loss < report.epochs[0].train_loss);
    assert!(after < 0.1 * before, "loss {before} -> {after}");

    // Greedy decoding now spells each image's caption.
    let g = generate_topk(&model, &embeds, &GenerateOptions { top_k: 6, keep_from: 3, ..Default::default() }).unwrap();
    let greedy: Vec<Vec<i64>> = (0..16).map(|i| Vec::<i64>::try_from(g.greedy.get(i)).unwrap()).collect();
    let mut right = 0;
    for (i, seq) in greedy.iter().enumerate() {
        let words: Vec<String> = seq[..4].iter().map(|&t| vocab.decode_token(t)).collect();
        let want = ["a", COLOURS[i / 4], SHAPES[i % 4], "</s>"];
        right += (words == want) as usize;
    }
    assert!(right >= 14, "only {right} of 16 images captioned correctly: {greedy:?}");
}

#[test]
fn training_is_seeded() {
    let _rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let ids: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    let set = CaptionSet { clip_embeds: &embeds, captions: &ids, image_of_caption: &image };
    let run = |seed: u64| {
        let mut model = tiny_model(&vocab, 0);
        let report = train_decoder(&mut model, &set, None, &TrainOptions { seed, ..opts(3) }).unwrap();
        (report.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(), model.state_dict())
    };
    let (a, wa) = run(5);
    let (b, wb) = run(5);
    let (c, _) = run(6);
    assert_eq!(a, b);
    assert!(wa.iter().zip(&wb).all(|((_, x), (_, y))| x.equal(y)));
    assert_ne!(a, c);
}

#[test]
fn fine_tunes_a_saved_model_keeping_the_best_validation_epoch() {
    let _rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let ids: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    let set = CaptionSet { clip_embeds: &embeds, captions: &ids, image_of_caption: &image };
    let mut model = tiny_model(&vocab, 0);
    train_decoder(&mut model, &set, None, &opts(5)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model_epoch5.pt");
    save_decoder(&model, &path).unwrap();
    let mut loaded = load_decoder(&path, Some(2), Device::Cpu).unwrap();
    let l0 = evaluate_loss(&model, &set, 64).unwrap();
    assert!((evaluate_loss(&loaded, &set, 64).unwrap() - l0).abs() < 1e-6);

    // Validation on half the images; a high lr makes some epochs worse.
    let val_ids: Vec<Vec<i64>> = ids.iter().step_by(3).cloned().collect();
    let val_img: Vec<usize> = image.iter().step_by(3).copied().collect();
    let val = CaptionSet { clip_embeds: &embeds, captions: &val_ids, image_of_caption: &val_img };
    let o = TrainOptions { lr: 3e-2, ..opts(6) };
    let report = train_decoder(&mut loaded, &set, Some(&val), &o).unwrap();
    let vals: Vec<f64> = report.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let best = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let best_epoch = report.best_epoch.unwrap();
    assert_eq!(vals[best_epoch], best);
    let now = evaluate_loss(&loaded, &val, 64).unwrap();
    assert!((now - best).abs() < 1e-6, "model holds val loss {now}, best epoch had {best} ({vals:?})");
}

#[test]
fn bad_caption_sets_are_clear_errors() {
    let _rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let mut model = tiny_model(&vocab, 0);
    let ids: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    let mut bad_image = image.clone();
    bad_image[4] = 99;
    let set = CaptionSet { clip_embeds: &embeds, captions: &ids, image_of_caption: &bad_image };
    let err = format!("{:#}", train_decoder(&mut model, &set, None, &opts(1)).unwrap_err());
    assert!(err.contains("caption 4 refers to image 99"), "{err}");

    let mut bad_ids = ids.clone();
    bad_ids[2][1] = 1000;
    let set = CaptionSet { clip_embeds: &embeds, captions: &bad_ids, image_of_caption: &image };
    let err = format!("{:#}", train_decoder(&mut model, &set, None, &opts(1)).unwrap_err());
    assert!(err.contains("token id 1000"), "{err}");

    let long: Vec<Vec<i64>> = ids.iter().map(|c| c.iter().cycle().take(20).copied().collect()).collect();
    let set = CaptionSet { clip_embeds: &embeds, captions: &long, image_of_caption: &image };
    let err = format!("{:#}", train_decoder(&mut model, &set, None, &opts(1)).unwrap_err());
    assert!(err.contains("20 tokens"), "{err}");

    let wide = Tensor::randn([16, 24], (Kind::Float, Device::Cpu));
    let set = CaptionSet { clip_embeds: &wide, captions: &ids, image_of_caption: &image };
    let err = format!("{:#}", train_decoder(&mut model, &set, None, &opts(1)).unwrap_err());
    assert!(err.contains("not a multiple"), "{err}");

    let missing = Path::new("/nonexistent/model_epoch100.pt");
    let err = format!("{:#}", load_decoder(missing, None, Device::Cpu).unwrap_err());
    assert!(err.contains("/nonexistent/model_epoch100.pt"), "{err}");
}

/// HF's loss (labels = input ids with pads set to -100, shifted inside the
/// model) on the same weights and batch as our `evaluate_loss`.
const HF_LOSS: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import BertGenerationConfig, BertGenerationDecoder
sd = load_file(sys.argv[1]); io = load_file(sys.argv[2])
V, H = sd["bert.embeddings.word_embeddings.weight"].shape
cfg = BertGenerationConfig(vocab_size=V, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=4 * H, max_position_embeddings=16, is_decoder=True, add_cross_attention=True)
model = BertGenerationDecoder(cfg).eval()
model.load_state_dict(sd)
ids = io["ids"]
labels = ids.clone(); labels[labels == 0] = -100
with torch.no_grad():
    out = model(input_ids=ids, attention_mask=(ids != 0).long(),
                encoder_hidden_states=io["clip"].repeat(1, 2).unsqueeze(1), labels=labels)
print(float(out.loss))
"#;

#[test]
fn loss_equals_hugging_face_shifted_lm_loss() {
    let Some(py) = decoder_common::python_with(&["torch", "transformers", "safetensors"]) else { return };
    let rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    // Captions of different lengths, so the batch is padded.
    let mut ids: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    ids[0] = vocab.encode_caption("a red", 12).unwrap();
    ids[1] = vocab.encode_caption("a red star on a blue circle", 12).unwrap();
    let model = tiny_model(&vocab, 4);
    tch::no_grad(|| {
        for (_, mut v) in model.var_store().variables() {
            let noise = v.randn_like() * 0.05;
            let _ = v.g_add_(&noise);
        }
    });
    let set = CaptionSet { clip_embeds: &embeds, captions: &ids, image_of_caption: &image };
    let ours = evaluate_loss(&model, &set, 1000).unwrap();
    drop(rng);

    let dir = tempfile::tempdir().unwrap();
    let sd_path = dir.path().join("sd.safetensors");
    let owned: Vec<(String, Tensor)> = model.state_dict().into_iter().map(|(n, t)| (n, t.copy())).collect();
    Tensor::write_safetensors(&owned, &sd_path).unwrap();
    let len = ids.iter().map(Vec::len).max().unwrap();
    let flat: Vec<i64> =
        ids.iter().flat_map(|c| c.iter().copied().chain(std::iter::repeat_n(0, len - c.len()))).collect();
    let id_tensor = Tensor::from_slice(&flat).view([ids.len() as i64, len as i64]);
    let rows = Tensor::from_slice(&image.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let clip = embeds.index_select(0, &rows);
    let io_path = dir.path().join("io.safetensors");
    Tensor::write_safetensors(&[("ids", &id_tensor), ("clip", &clip)], &io_path).unwrap();
    let out = decoder_common::run_python(&py, HF_LOSS, &[sd_path.to_str().unwrap(), io_path.to_str().unwrap()]);
    let hf: f64 = out.trim().parse().unwrap();
    assert!((ours - hf).abs() < 1e-5, "our loss {ours}, HF {hf}");
}

#[test]
fn outlier_words_are_the_kept_ranks_decoded_in_order() {
    let _rng = crate::rng_lock();
    let (embeds, captions, _) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let model = tiny_model(&vocab, 2);
    let o = GenerateOptions { top_k: 8, keep_from: 5, steps: 4, batch_size: 5, ..Default::default() };
    let words = outlier_words(&model, &vocab, &embeds.narrow(0, 0, 7), &o).unwrap();
    assert_eq!(words.len(), 7 * 4 * 3);
    let kept = generate_topk(&model, &embeds.narrow(0, 0, 7), &o).unwrap().kept;
    let ids = Vec::<i64>::try_from(kept.flatten(0, -1)).unwrap();
    let decoded: Vec<String> = ids.iter().map(|&t| vocab.decode_token(t).to_lowercase()).collect();
    assert_eq!(words, decoded);
    // ranks 6..8 of a top-8: never the argmax
    let g = generate_topk(&model, &embeds.narrow(0, 0, 7), &o).unwrap();
    assert_eq!(kept.eq_tensor(&g.greedy.unsqueeze(-1)).any().int64_value(&[]), 0);

    let bigger: Vec<String> = (0..20).map(|i| format!("word{i}")).collect();
    let other = WordVocab::build(&bigger, 1);
    let err = format!("{:#}", outlier_words(&model, &other, &embeds, &o).unwrap_err());
    assert!(err.contains("do not belong together"), "{err}");
    let err =
        format!("{:#}", generate_topk(&model, &embeds, &GenerateOptions { top_k: 500, ..o.clone() }).unwrap_err());
    assert!(err.contains("exceeds the decoder vocabulary"), "{err}");
    let empty = generate_topk(&model, &embeds.narrow(0, 0, 0), &o).unwrap();
    assert_eq!(empty.kept.size(), vec![0, 4, 3]);
}

#[test]
fn reduced_precision_generation_runs_and_training_refuses_it() {
    let _rng = crate::rng_lock();
    let (embeds, captions, image) = toy_world();
    let vocab = WordVocab::build(&captions, 1);
    let mut model = tiny_model(&vocab, 3);
    let ids = Tensor::from_slice(&[2i64, 4, 5, 6]).view([1, 4]);
    let enc = toe_pipe::decoder::clip_to_encoder_states(&embeds.narrow(0, 0, 1), 32, Kind::Float).unwrap();
    let full = tch::no_grad(|| model.forward(&ids, &enc, None, false).unwrap());
    model.set_kind(Kind::BFloat16);
    assert_eq!(model.kind(), Kind::BFloat16);
    let enc16 = enc.to_kind(Kind::BFloat16);
    let half = tch::no_grad(|| model.forward(&ids, &enc16, None, false).unwrap()).to_kind(Kind::Float);
    let d = (&half - &full).abs().max().double_value(&[]);
    assert!(d < 0.1, "bf16 logits differ by {d}");
    let g = generate_topk(&model, &embeds, &GenerateOptions { top_k: 6, keep_from: 3, ..Default::default() }).unwrap();
    assert_eq!(g.kept.size(), vec![16, 9, 3]);

    let caps: Vec<Vec<i64>> = captions.iter().map(|c| vocab.encode_caption(c, 12).unwrap()).collect();
    let set = CaptionSet { clip_embeds: &embeds, captions: &caps, image_of_caption: &image };
    let err = format!("{:#}", train_decoder(&mut model, &set, None, &opts(1)).unwrap_err());
    assert!(err.contains("fp32"), "{err}");
}
