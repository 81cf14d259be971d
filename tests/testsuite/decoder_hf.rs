//! Conformance of the native decoder with Hugging Face's
//! BertGenerationDecoder (`is_decoder=True, add_cross_attention=True`) on a
//! tiny random configuration built in Python at test time: same logits to
//! 1e-4, same greedy/top-k generation as a Python port of the original
//! code, ZOC `{'net': state_dict}` checkpoints read from and written for
//! PyTorch (our saved state dicts load strictly into HF).

use crate::decoder_common;

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use toe_pipe::decoder::{
    clip_to_encoder_states, generate_topk, load_decoder, save_decoder_with_epoch, BertGenerationDecoder, DecoderConfig,
    GenerateOptions,
};

/// Builds the HF model, perturbs every parameter (so LayerNorm and biases
/// matter), saves it and its outputs on fixed inputs as safetensors.
const BUILD_HF: &str = r#"
import sys, torch
from safetensors.torch import save_file
from transformers import BertGenerationConfig, BertGenerationDecoder
out = sys.argv[1]
torch.manual_seed(0)
cfg = BertGenerationConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=96, max_position_embeddings=40, is_decoder=True,
                           add_cross_attention=True)
model = BertGenerationDecoder(cfg).eval()
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
        # a more peaked LM head so that top-k ranks are well separated
    model.lm_head.bias.mul_(20.0)
sd = model.state_dict()
save_file({k: v.clone().contiguous() for k, v in sd.items()}, out + "/hf_decoder.safetensors")
# ZOC's train_decoder.py checkpoint layout
torch.save({"net": sd, "epoch": 99, "validation loss": 1.25}, out + "/model_epoch100.pt")

ids = torch.randint(3, 100, (3, 7))
ids[:, 0] = cfg.bos_token_id
clip = torch.randn(3, 32)
enc = clip.repeat(1, 2).unsqueeze(1)
mask = torch.ones(3, 7, dtype=torch.long)
mask[1, 5:] = 0
mask[2, 3:] = 0
enc3 = torch.randn(3, 3, 64)
res = {"ids": ids, "clip": clip, "mask": mask, "enc3": enc3}
with torch.no_grad():
    res["logits"] = model(input_ids=ids, encoder_hidden_states=enc).logits
    res["logits_masked"] = model(input_ids=ids, attention_mask=mask, encoder_hidden_states=enc).logits
    res["logits_enc3"] = model(input_ids=ids, encoder_hidden_states=enc3).logits

    # Python port of the original greedysearch_generation_topk, batched:
    # real greedy (append the argmax) and the original (feed only [BOS]).
    for mode in ("greedy", "bos_only"):
        target = torch.full((3, 1), cfg.bos_token_id, dtype=torch.long)
        greedy, kept = [], []
        for step in range(9):
            inp = target if mode == "greedy" else torch.full((3, 1), cfg.bos_token_id, dtype=torch.long)
            position_ids = torch.arange(0, inp.shape[1]).expand(3, inp.shape[1])
            logits = model(input_ids=inp, position_ids=position_ids, attention_mask=torch.ones_like(inp),
                           encoder_hidden_states=enc).logits
            pred = logits.argmax(2)[:, -1]
            _, top_k = torch.topk(logits, dim=2, k=55)
            kept.append(top_k[:, -1][:, 30:])
            greedy.append(pred)
            target = torch.cat([target, pred[:, None]], 1)
        res[mode + "_ids"] = torch.stack(greedy, 1)
        res[mode + "_kept"] = torch.stack(kept, 1)
save_file({k: v.contiguous() for k, v in res.items()}, out + "/hf_outputs.safetensors")
"#;

/// Loads a state dict we wrote into a fresh HF model with strict=True and
/// prints the max |logit difference| against logits we computed.
const LOAD_OURS: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import BertGenerationConfig, BertGenerationDecoder
ckpt = torch.load(sys.argv[1], weights_only=True)
sd = ckpt["net"]
assert ckpt["epoch"] == 7 and abs(ckpt["validation loss"] - 0.75) < 1e-12, ckpt.keys()
io = load_file(sys.argv[2])
cfg = BertGenerationConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=48, max_position_embeddings=16, is_decoder=True,
                           add_cross_attention=True)
model = BertGenerationDecoder(cfg).eval()
missing, unexpected = model.load_state_dict(sd, strict=True)
with torch.no_grad():
    logits = model(input_ids=io["ids"], encoder_hidden_states=io["enc"]).logits
print(float((logits - io["logits"]).abs().max()))
"#;

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn logits_and_generation_match_hugging_face() {
    let _rng = crate::rng_draws();
    let Some(py) = decoder_common::python_with(&["torch", "transformers", "safetensors"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    decoder_common::run_python(&py, BUILD_HF, &[dir.path().to_str().unwrap()]);
    let model = load_decoder(&dir.path().join("model_epoch100.pt"), Some(4), Device::Cpu).unwrap();
    // The same weights through safetensors.
    let from_st = load_decoder(&dir.path().join("hf_decoder.safetensors"), Some(4), Device::Cpu).unwrap();
    for ((n, a), (_, b)) in model.state_dict().iter().zip(&from_st.state_dict()) {
        assert!(a.equal(b), "{n} differs between the .pt and .safetensors files");
    }
    let c = model.config();
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.max_position_embeddings),
        (100, 64, 2, 96, 40)
    );
    assert!(c.tie_word_embeddings);

    let io = read(&dir.path().join("hf_outputs.safetensors"));
    let enc = clip_to_encoder_states(&io["clip"], 64, Kind::Float).unwrap();
    tch::no_grad(|| {
        let logits = model.forward(&io["ids"], &enc, None, false).unwrap();
        let d = max_diff(&logits, &io["logits"]);
        assert!(d < 1e-4, "logits differ by {d}");

        // Padding mask: compare the real (unpadded) positions.
        let masked = model.forward(&io["ids"], &enc, Some(&io["mask"]), false).unwrap();
        let keep = io["mask"].to_kind(Kind::Bool).unsqueeze(-1);
        let d = max_diff(
            &masked.masked_fill(&keep.logical_not(), 0.0),
            &io["logits_masked"].masked_fill(&keep.logical_not(), 0.0),
        );
        assert!(d < 1e-4, "masked logits differ by {d}");

        // Cross-attention over a longer encoder sequence.
        let d = max_diff(&model.forward(&io["ids"], &io["enc3"], None, false).unwrap(), &io["logits_enc3"]);
        assert!(d < 1e-4, "3-token encoder logits differ by {d}");

        // The key/value cache gives the full forward's logits, token by token
        // and in blocks.
        let mut cache = model.start_cache(&enc).unwrap();
        for t in 0..7 {
            let step = model.step(&io["ids"].narrow(1, t, 1), &mut cache).unwrap();
            let d = max_diff(&step, &io["logits"].select(1, t));
            assert!(d < 1e-4, "cached step {t} differs by {d}");
        }
        let mut cache = model.start_cache(&enc).unwrap();
        let _ = model.step(&io["ids"].narrow(1, 0, 3), &mut cache).unwrap();
        let block = model.step(&io["ids"].narrow(1, 3, 4), &mut cache).unwrap();
        assert!(max_diff(&block, &io["logits"].select(1, 6)) < 1e-4);
        assert_eq!(cache.len(), 7);
    });

    for (feed_only_bos, mode) in [(false, "greedy"), (true, "bos_only")] {
        let opts = GenerateOptions { feed_only_bos, batch_size: 2, ..Default::default() };
        let g = generate_topk(&model, &io["clip"], &opts).unwrap();
        assert_eq!(g.kept.size(), vec![3, 9, 25]);
        assert_eq!(
            Vec::<i64>::try_from(g.greedy.flatten(0, -1)).unwrap(),
            Vec::<i64>::try_from(io[&format!("{mode}_ids")].flatten(0, -1)).unwrap(),
            "{mode} greedy ids"
        );
        assert_eq!(
            Vec::<i64>::try_from(g.kept.flatten(0, -1)).unwrap(),
            Vec::<i64>::try_from(io[&format!("{mode}_kept")].flatten(0, -1)).unwrap(),
            "{mode} kept ids"
        );
    }
    // The two modes really differ after the first step.
    let real = generate_topk(&model, &io["clip"], &GenerateOptions::default()).unwrap();
    assert!(!real.kept.select(1, 0).equal(&real.kept.select(1, 8)));
}

#[test]
fn saved_state_dict_loads_strictly_into_hugging_face() {
    let Some(py) = decoder_common::python_with(&["torch", "transformers", "safetensors"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let rng = crate::rng_lock();
    tch::manual_seed(3);
    let mut config = DecoderConfig::small(50, 32, 3, 2);
    config.intermediate_size = 48;
    config.max_position_embeddings = 16;
    let model = BertGenerationDecoder::new(config, Device::Cpu).unwrap();
    // Perturb everything (biases and LayerNorms start at 0/1).
    tch::no_grad(|| {
        for (_, mut v) in model.var_store().variables() {
            let noise = v.randn_like() * 0.05;
            let _ = v.g_add_(&noise);
        }
    });
    let ids = Tensor::randint_low(3, 50, [2, 6], (Kind::Int64, Device::Cpu));
    let enc = Tensor::randn([2, 1, 32], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| model.forward(&ids, &enc, None, false).unwrap());
    drop(rng);
    let sd_path = dir.path().join("ours.pt");
    save_decoder_with_epoch(&model, &sd_path, 7, Some(0.75)).unwrap();
    // And back: our own file loads to identical weights.
    let reloaded = load_decoder(&sd_path, Some(2), Device::Cpu).unwrap();
    for ((n, a), (_, b)) in model.state_dict().iter().zip(&reloaded.state_dict()) {
        assert!(a.equal(b), "{n} changed in a save/load round trip");
    }
    let io_path = dir.path().join("io.safetensors");
    Tensor::write_safetensors(&[("ids", &ids), ("enc", &enc), ("logits", &logits)], &io_path).unwrap();
    let out = decoder_common::run_python(&py, LOAD_OURS, &[sd_path.to_str().unwrap(), io_path.to_str().unwrap()]);
    let d: f64 = out.trim().parse().unwrap();
    assert!(d < 1e-4, "HF logits of our saved weights differ by {d}");
}

fn tiny_weights(prefix: &str) -> Vec<(String, Tensor)> {
    tch::manual_seed(1);
    let model = BertGenerationDecoder::new(DecoderConfig::small(30, 16, 2, 2), Device::Cpu).unwrap();
    model.state_dict().into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)).collect()
}

#[test]
fn loads_zoc_prefixed_state_dicts_and_names_bad_tensors() {
    let _rng = crate::rng_lock();
    let src = Path::new("model_epoch100.pt");
    // ZOC's {'net': state_dict}, flattened with '.', plus a non-weight entry.
    let mut weights = tiny_weights("net.");
    weights.push((
        "net.bert.embeddings.position_ids".into(),
        Tensor::arange(128, (Kind::Int64, Device::Cpu)).unsqueeze(0),
    ));
    let model = BertGenerationDecoder::from_weights(&weights, Some(2), Device::Cpu, src).unwrap();
    assert_eq!(model.config().num_hidden_layers, 2);
    assert_eq!(model.config().num_attention_heads, 2);
    let reference = tiny_weights("");
    for ((n, a), (m, b)) in model.state_dict().iter().zip(&reference) {
        assert_eq!(n, m);
        assert!(a.equal(b), "{n} differs after loading");
    }
    // Heads default to width / 64, at least one.
    let one_head = BertGenerationDecoder::from_weights(&weights, None, Device::Cpu, src).unwrap();
    assert_eq!(one_head.config().num_attention_heads, 1);

    let missing: Vec<_> = tiny_weights("net.")
        .into_iter()
        .filter(|(n, _)| !n.ends_with("layer.1.crossattention.self.key.bias"))
        .collect();
    let err = format!("{:#}", BertGenerationDecoder::from_weights(&missing, Some(2), Device::Cpu, src).unwrap_err());
    assert!(
        err.contains("model_epoch100.pt") && err.contains("net.bert.encoder.layer.1.crossattention.self.key.bias"),
        "{err}"
    );

    let mut bad = tiny_weights("");
    for (n, t) in bad.iter_mut() {
        if n == "bert.encoder.layer.0.output.dense.weight" {
            *t = Tensor::zeros([16, 63], (Kind::Float, Device::Cpu));
        }
    }
    let err = format!("{:#}", BertGenerationDecoder::from_weights(&bad, Some(2), Device::Cpu, src).unwrap_err());
    assert!(
        err.contains("model_epoch100.pt")
            && err.contains("bert.encoder.layer.0.output.dense.weight")
            && err.contains("[16, 63]"),
        "{err}"
    );

    let err = format!("{:#}", BertGenerationDecoder::from_weights(&bad, Some(3), Device::Cpu, src).unwrap_err());
    assert!(err.contains("not a multiple"), "{err}");
    let no_cross: Vec<_> = tiny_weights("").into_iter().filter(|(n, _)| !n.contains("crossattention")).collect();
    let err = format!("{:#}", BertGenerationDecoder::from_weights(&no_cross, Some(2), Device::Cpu, src).unwrap_err());
    assert!(err.contains("add_cross_attention"), "{err}");
    let err = format!("{:#}", BertGenerationDecoder::from_weights(&[], Some(2), Device::Cpu, src).unwrap_err());
    assert!(err.contains("model_epoch100.pt") && err.contains("not a BertGenerationDecoder"), "{err}");
}

#[test]
fn untied_lm_head_is_kept_separate() {
    let _rng = crate::rng_lock();
    let src = Path::new("untied.safetensors");
    let mut weights = tiny_weights("");
    for (n, t) in weights.iter_mut() {
        if n == "lm_head.decoder.weight" {
            *t = t.copy() + 1.0;
        }
    }
    let model = BertGenerationDecoder::from_weights(&weights, Some(2), Device::Cpu, src).unwrap();
    assert!(!model.config().tie_word_embeddings);
    let sd: HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    let given: HashMap<String, Tensor> = weights.into_iter().collect();
    assert!(sd["lm_head.decoder.weight"].equal(&given["lm_head.decoder.weight"]));
    assert!(sd["bert.embeddings.word_embeddings.weight"].equal(&given["bert.embeddings.word_embeddings.weight"]));
}

#[test]
fn clip_embeddings_are_tiled_to_the_decoder_width() {
    let clip = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
    let enc = clip_to_encoder_states(&clip, 6, Kind::Float).unwrap();
    assert_eq!(enc.size(), vec![2, 1, 6]);
    assert_eq!(Vec::<f32>::try_from(enc.flatten(0, -1)).unwrap(), vec![1., 2., 1., 2., 1., 2., 3., 4., 3., 4., 3., 4.]);
    let err = format!("{:#}", clip_to_encoder_states(&clip, 5, Kind::Float).unwrap_err());
    assert!(err.contains("not a multiple"), "{err}");
}
