//! Throughput of the native CLIP: images/s through `encode_image` of a
//! ViT-B/16-sized model with random weights (the model TOE's main results
//! use), and texts/s through `encode_text`. With the project venv present it
//! then times OpenAI's PyTorch code on the same shapes in the same run
//! (benches/clip_throughput_reference.py), so the ratio is side by side.
//!
//!     cargo bench --bench clip_throughput
//!     cargo bench --bench clip_throughput -- --device cuda --kind half --batch 256
//!
//! Images are random tensors already at 224x224: this measures the model,
//! not JPEG decoding or resizing.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tch::{nn, Device, Kind, Tensor};
use toe_pipe::clip::{Clip, ClipConfig, Tokenizer};

#[derive(Parser)]
struct Args {
    /// One of OpenAI's model names (`ViT-B/16`, `ViT-B/32`, `RN50`, ...).
    #[arg(long, default_value = "ViT-B/16")]
    model: String,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// `float`, `half` or `bfloat16` (the latter two on CUDA).
    #[arg(long, default_value = "float")]
    kind: String,
    /// Images per `encode_image` call.
    #[arg(long, default_value_t = 32)]
    batch: i64,
    /// Timed batches (after one warm-up batch).
    #[arg(long, default_value_t = 3)]
    batches: usize,
    /// Texts per `encode_text` call.
    #[arg(long, default_value_t = 256)]
    text_batch: usize,
    /// Skip the PyTorch reference run.
    #[arg(long)]
    no_reference: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
        "cuda" => bail!("--device cuda: libtorch sees no CUDA device"),
        other => bail!("--device {other}: use cpu or cuda"),
    };
    let kind = match args.kind.as_str() {
        "float" => Kind::Float,
        "half" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        other => bail!("--kind {other}: use float, half or bfloat16"),
    };
    let config = ClipConfig::openai(&args.model)
        .with_context(|| format!("--model {}: not one of {:?}", args.model, ClipConfig::OPENAI_MODELS))?;
    let mut vs = nn::VarStore::new(device);
    let model = Clip::new(&vs.root(), &config);
    vs.set_kind(kind);
    println!("native CLIP {} on {:?} ({:?}), {} intra-op threads", args.model, device, kind, tch::get_num_threads());

    let res = config.image_resolution;
    let images = Tensor::randn([args.batch, 3, res, res], (Kind::Float, device)).to_kind(kind);
    let _ = model.encode_image(&images)?; // warm-up
    let start = Instant::now();
    for _ in 0..args.batches {
        let features = model.encode_image(&images)?;
        let _ = features.sum(Kind::Float).double_value(&[]); // wait for the device
    }
    let seconds = start.elapsed().as_secs_f64();
    let images_per_s = (args.batch as usize * args.batches) as f64 / seconds;
    println!(
        "native encode_image: {images_per_s:.1} images/s (batch {}, {} batches in {seconds:.2} s)",
        args.batch, args.batches
    );

    let tokenizer = Tokenizer::new()?;
    let captions: Vec<String> = (0..args.text_batch)
        .map(|i| {
            format!(
                "a photo of a {} {} on a striped background, number {i}",
                ["red", "small", "blue"][i % 3],
                ["star", "goldfish", "tench", "house"][i % 4]
            )
        })
        .collect();
    let start = Instant::now();
    let tokens = tokenizer.tokenize(&captions, config.text.context_length as usize, true)?;
    let tokenize_s = start.elapsed().as_secs_f64();
    // Warm up on the timed shape: on CUDA the first call of a shape picks
    // its GEMM and attention kernels, which a smaller warm-up batch does not
    // cover (a single timed call after a batch-8 warm-up once made fp16 look
    // 7x slower than fp32).
    let _ = model.encode_text(&tokens)?.sum(Kind::Float).double_value(&[]);
    let start = Instant::now();
    for _ in 0..args.batches {
        let features = model.encode_text(&tokens)?;
        let _ = features.sum(Kind::Float).double_value(&[]);
    }
    let text_s = start.elapsed().as_secs_f64() / args.batches as f64;
    println!(
        "native tokenize: {:.0} texts/s; encode_text: {:.1} texts/s (batch {}, {} timed batches)",
        captions.len() as f64 / tokenize_s,
        captions.len() as f64 / text_s,
        captions.len(),
        args.batches
    );

    if args.no_reference || device != Device::Cpu || kind != Kind::Float {
        return Ok(());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("(no {}: PyTorch reference skipped)", python.display());
        return Ok(());
    }
    let output = Command::new(&python)
        .arg(root.join("benches/clip_throughput_reference.py"))
        .args([&args.model, &args.batch.to_string(), &args.batches.to_string()])
        .output()
        .context("running the PyTorch reference")?;
    if !output.status.success() {
        bail!("the PyTorch reference failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let reference: f64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("images/s ")?.trim().parse().ok())
        .context("the PyTorch reference printed no `images/s` line")?;
    println!(
        "PyTorch (OpenAI's clip.model) encode_image: {reference:.1} images/s; native / PyTorch = {:.2}",
        images_per_s / reference
    );
    Ok(())
}
