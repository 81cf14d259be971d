//! The native CLIP gives OpenAI's features: tiny random models are built with
//! the reference code (`tests/clip_reference.py`), saved in every format,
//! loaded here, and their features compared on the same inputs.

use crate::clip_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clip_support::{path_str, run_reference};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use toe_pipe::clip::{self, Clip, ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};

const TOLERANCE: f64 = 1e-4;

/// The reference's files, made once per test run and removed when the test
/// binary exits. A static is never dropped, so a `TempDir` held in one
/// stayed behind: 165 MB in /tmp after every run.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_dir() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        // SAFETY: registers a function that only removes a folder; libtest
        // leaves through `exit`, which runs it.
        unsafe { libc::atexit(remove_dir) };
        run_reference(&["models", path_str(&dir)]);
        dir
    })
}

fn reference_file(name: &str) -> PathBuf {
    reference_dir().join(name)
}

/// The reference's inputs and features for one model.
struct Io {
    images: Tensor,
    tokens: Tensor,
    image_features: Tensor,
    text_features: Tensor,
}

fn io(model: &str) -> Io {
    let tensors: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(reference_file(&format!("{model}.io.safetensors"))).unwrap().into_iter().collect();
    Io {
        images: tensors["images"].shallow_clone(),
        tokens: tensors["tokens"].shallow_clone(),
        image_features: tensors["image_features"].shallow_clone(),
        text_features: tensors["text_features"].shallow_clone(),
    }
}

fn assert_close(got: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(got.size(), expected.size(), "{what}: shape");
    let diff = (got - expected).abs().max().double_value(&[]);
    assert!(diff <= TOLERANCE, "{what}: max abs difference {diff:e} > {TOLERANCE:e}");
}

fn check_features(loaded: &clip::LoadedClip, model: &str, source: &str) {
    let io = io(model);
    let image = loaded.clip.encode_image(&io.images).unwrap();
    assert_close(&image, &io.image_features, &format!("{model} image features from {source}"));
    let text = loaded.clip.encode_text(&io.tokens).unwrap();
    assert_close(&text, &io.text_features, &format!("{model} text features from {source}"));
}

fn vit_config() -> ClipConfig {
    ClipConfig {
        embed_dim: 32,
        image_resolution: 32,
        vision: VisionConfig::Vit(VitConfig { width: 128, layers: 2, heads: 2, patch_size: 8 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 128, heads: 2, layers: 2 },
    }
}

fn resnet_config() -> ClipConfig {
    ClipConfig {
        embed_dim: 24,
        image_resolution: 64,
        vision: VisionConfig::ResNet(ResNetConfig { layers: [1, 2, 1, 1], width: 8, heads: 4 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 64, heads: 1, layers: 1 },
    }
}

#[test]
fn vit_from_safetensors_matches_reference() {
    let _rng = crate::rng_draws();
    let loaded = clip::load(reference_file("vit.safetensors"), Device::Cpu).unwrap();
    assert_eq!(*loaded.clip.config(), vit_config());
    check_features(&loaded, "vit", "safetensors");
}

#[test]
fn resnet_from_safetensors_matches_reference() {
    let _rng = crate::rng_draws();
    let loaded = clip::load(reference_file("resnet.safetensors"), Device::Cpu).unwrap();
    assert_eq!(*loaded.clip.config(), resnet_config());
    check_features(&loaded, "resnet", "safetensors");
}

#[test]
fn vit_from_torchscript_matches_reference() {
    let _rng = crate::rng_draws();
    let path = reference_file("vit.ts");
    let loaded = clip::load(&path, Device::Cpu).unwrap();
    assert_eq!(*loaded.clip.config(), vit_config());
    check_features(&loaded, "vit", "TorchScript");
    // The archive's own traced methods agree with the native model too.
    let module = tch::CModule::load(&path).unwrap();
    let io = io("vit");
    let traced = module.method_ts("encode_image", &[io.images.shallow_clone()]).unwrap();
    assert_close(&loaded.clip.encode_image(&io.images).unwrap(), &traced, "native vs traced encode_image");
}

#[test]
fn resnet_from_torchscript_matches_reference() {
    let _rng = crate::rng_draws();
    // The batch-norm statistics are buffers, not parameters: read from the archive.
    let loaded = clip::load(reference_file("resnet.ts"), Device::Cpu).unwrap();
    assert_eq!(*loaded.clip.config(), resnet_config());
    check_features(&loaded, "resnet", "TorchScript");
}

#[test]
fn both_from_torch_save_state_dicts_match_reference() {
    let _rng = crate::rng_draws();
    for (model, config) in [("vit", vit_config()), ("resnet", resnet_config())] {
        let loaded = clip::load(reference_file(&format!("{model}.pt")), Device::Cpu).unwrap();
        assert_eq!(*loaded.clip.config(), config);
        check_features(&loaded, model, "torch.save state dict");
        let wrapped = clip::load(reference_file(&format!("{model}.wrapped.pt")), Device::Cpu).unwrap();
        check_features(&wrapped, model, "wrapped training checkpoint");
    }
}

/// The fp16 and bf16 code path (meant for CUDA) runs on the CPU too: the
/// features stay close to the fp32 reference.
#[test]
fn half_and_bfloat16_features_track_fp32() {
    let _rng = crate::rng_draws();
    let cosine = |a: &Tensor, b: &Tensor| {
        let (a, b) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
        let dot = (&a * &b).sum_dim_intlist([-1].as_slice(), false, Kind::Float);
        (dot / (a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false))).min().double_value(&[])
    };
    for model in ["vit", "resnet"] {
        let io = io(model);
        for (kind, least) in [(Kind::Half, 0.999), (Kind::BFloat16, 0.99)] {
            let mut loaded = clip::load(reference_file(&format!("{model}.safetensors")), Device::Cpu).unwrap();
            loaded.set_kind(kind);
            let image = loaded.clip.encode_image(&io.images).unwrap();
            let text = loaded.clip.encode_text(&io.tokens).unwrap();
            assert_eq!((image.kind(), text.kind()), (kind, kind));
            let (image_cos, text_cos) = (cosine(&image, &io.image_features), cosine(&text, &io.text_features));
            assert!(image_cos > least && text_cos > least, "{model} {kind:?}: cosine {image_cos} / {text_cos}");
        }
    }
}

#[test]
fn batches_are_independent() {
    let _rng = crate::rng_draws();
    let loaded = clip::load(reference_file("resnet.safetensors"), Device::Cpu).unwrap();
    let io = io("resnet");
    let one = loaded.clip.encode_image(&io.images.narrow(0, 1, 1)).unwrap();
    assert_close(&one, &io.image_features.narrow(0, 1, 1), "image 1 encoded alone");
    // Rows cut after the longest caption's end token give the same features.
    let longest = io.tokens.argmax(1, false).max().int64_value(&[]) + 1;
    assert!(longest < 77);
    let short = loaded.clip.encode_text(&io.tokens.narrow(1, 0, longest)).unwrap();
    assert_close(&short, &io.text_features, &format!("tokens cut to {longest} positions"));
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let _rng = crate::rng_draws();
    let tensors = Tensor::read_safetensors(reference_file("vit.safetensors")).unwrap();
    let without: Vec<_> = tensors
        .iter()
        .filter(|(name, _)| name != "transformer.resblocks.1.ln_2.bias")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let err = clip::weights::from_tensors(without, Device::Cpu).err().expect("a missing tensor fails");
    assert!(err.to_string().contains("`transformer.resblocks.1.ln_2.bias`"), "{err}");

    let reshaped: Vec<_> = tensors
        .iter()
        .map(|(n, t)| {
            let t = if n == "visual.ln_post.weight" { t.narrow(0, 0, 100) } else { t.shallow_clone() };
            (n.clone(), t)
        })
        .collect();
    let err = clip::weights::from_tensors(reshaped, Device::Cpu).err().expect("a mis-shaped tensor fails");
    assert!(err.to_string().contains("`visual.ln_post.weight` has shape [100]"), "{err}");

    let without_root: Vec<_> = tensors
        .iter()
        .filter(|(name, _)| name != "ln_final.weight")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let err = clip::weights::from_tensors(without_root, Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("no tensor `ln_final.weight`"), "{err}");

    // A file in no checkpoint format names itself.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let err = clip::load(&junk, Device::Cpu).err().unwrap();
    assert!(format!("{err:#}").contains("junk.bin"), "{err:#}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let _rng = crate::rng_draws();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Clip::new(&vs.root(), &vit_config());
    let wrong_size = Tensor::zeros([2, 3, 48, 48], (Kind::Float, Device::Cpu));
    let err = model.encode_image(&wrong_size).unwrap_err();
    assert!(err.to_string().contains("[batch, 3, 32, 32]"), "{err}");
    let too_long = Tensor::zeros([1, 78], (Kind::Int64, Device::Cpu));
    assert!(model.encode_text(&too_long).is_err());
    let out_of_vocab = Tensor::from_slice(&[49406i64, 50000]).view([1, 2]);
    let err = model.encode_text(&out_of_vocab).unwrap_err();
    assert!(err.to_string().contains("0..49408"), "{err}");
}

/// The configuration is inferred from the weights as OpenAI's `build_model`
/// does, for every released model, and the native model has exactly the
/// reference's tensor names and shapes.
#[test]
fn openai_configurations_are_inferred_from_shapes() {
    let _rng = crate::rng_draws();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shapes.json");
    run_reference(&["shapes", path_str(&out)]);
    let all: BTreeMap<String, BTreeMap<String, Vec<i64>>> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(all.len(), ClipConfig::OPENAI_MODELS.len());
    for (name, shapes) in &all {
        let expected = ClipConfig::openai(name).unwrap();
        assert_eq!(ClipConfig::from_shapes(shapes).unwrap(), expected, "{name}");
    }
    // Building is cheap only for the smaller towers; the shapes above cover the rest.
    for name in ["ViT-B/32", "RN50"] {
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = Clip::new(&vs.root(), &ClipConfig::openai(name).unwrap());
        let native: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
        let reference: BTreeMap<String, Vec<i64>> = all[name]
            .iter()
            .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        assert_eq!(native, reference, "{name}: tensor names and shapes");
    }
}

/// The same modules train: a few steps of CLIP's contrastive loss on one
/// batch lower it, and every weight receives a gradient.
#[test]
fn a_tiny_resnet_clip_trains() {
    let _rng = crate::rng_lock();
    tch::manual_seed(0);
    let config = ClipConfig {
        embed_dim: 16,
        image_resolution: 32,
        vision: VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 8, heads: 2 }),
        text: TextConfig { context_length: 8, vocab_size: 20, width: 32, heads: 2, layers: 1 },
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Clip::new(&vs.root(), &config);
    let images = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
    // Eight distinct captions, each ending with its end token (the highest id).
    let tokens = Tensor::from_slice(
        &(0..64).map(|i| if i % 8 == 7 { 19 } else { (i * 7 + i / 8) % 18 + 1 }).collect::<Vec<i64>>(),
    )
    .view([8, 8]);
    let labels = Tensor::arange(8, (Kind::Int64, Device::Cpu));
    let loss = || {
        let logits =
            model.logits(&model.encode_image_t(&images, true).unwrap(), &model.encode_text_t(&tokens).unwrap());
        (logits.cross_entropy_for_logits(&labels) + logits.transpose(0, 1).cross_entropy_for_logits(&labels)) / 2
    };
    let mut optimizer = nn::Adam::default().build(&vs, 3e-3).unwrap();
    let first = loss();
    optimizer.zero_grad();
    first.backward();
    for (name, variable) in vs.variables() {
        if variable.requires_grad() {
            assert!(variable.grad().defined(), "no gradient reaches `{name}`");
        }
    }
    optimizer.step();
    for _ in 0..8 {
        optimizer.backward_step(&loss());
    }
    let (before, after) = (first.double_value(&[]), loss().double_value(&[]));
    assert!(after < before * 0.5, "loss went from {before} to {after}");
}
