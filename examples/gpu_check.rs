//! CUDA checks of the GPU code paths, for a machine with a GPU (CI has none):
//! each op runs on the CPU and on CUDA with the same weights and inputs, and
//! a PASS/FAIL table with the measured differences is printed last.
//!
//!     cargo run --release --example gpu_check
//!     cargo run --release --example gpu_check -- --device cpu   # the program itself, CPU against CPU
//!
//! * native CLIP (tiny random ViT and ResNet, the shapes of
//!   tests/testsuite/clip_model.rs): fp32 features on CUDA against the CPU's, with
//!   cuDNN on (libtorch's default, whose convolutions may use TF32) and off;
//!   fp16 and bf16 features on CUDA against the CPU's fp32 (cosine);
//! * `train_head`: a CUDA run against a CPU run with the same seed. The
//!   initial head and the shuffles come from each device's own random
//!   generator, so the weights are not comparable number for number: the
//!   check is that both reach the same loss and accuracy, and that two CUDA
//!   runs with one seed give identical weights; then epochs/s on CUDA and
//!   CPU at the size of benches/train_oe.rs;
//! * the decoder (tiny random BertGeneration): logits on CUDA against the
//!   CPU's, and `outlier_words` gives the same words on both.
//!
//! * `train_contrastive` (the `train_clip` op) on the demo world's corpus
//!   with the demo's tiny ResNet CLIP: a CUDA run that starts from the CPU
//!   run's initial weights must follow the CPU's loss curve; `--clip-variants`
//!   also prints the curves with cuDNN off and with the initial weights drawn
//!   on CUDA.
//!
//! Throughput of CLIP on CUDA is benches/clip_throughput.rs's job.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tch::{nn, Cuda, Device, Kind, Tensor};
use toe_pipe::clip::train::{train_contrastive, ContrastiveOptions, Pairs, StepLog};
use toe_pipe::clip::Tokenizer;
use toe_pipe::clip::{self, Clip, ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use toe_pipe::decoder::{
    clip_to_encoder_states, outlier_words, BertGenerationDecoder, DecoderConfig, GenerateOptions, WordVocab,
};
use toe_pipe::formats::CaptionCorpus;
use toe_pipe::images::{BatchOptions, Batches, Sample};
use toe_pipe::toe::train_head::{train_head, HeadConfig};
use toe_pipe::world::{write_set, WorldConfig, WorldSet};

#[derive(Parser)]
struct Args {
    /// `cuda` (CUDA device 0), or `cpu` to try this program on a machine
    /// without a GPU (every comparison is then CPU against CPU).
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Run only the `train_contrastive` check.
    #[arg(long)]
    only_train_clip: bool,
    /// Also print CUDA loss curves with cuDNN off and with CUDA-drawn
    /// initial weights (diagnostics, no pass/fail).
    #[arg(long)]
    clip_variants: bool,
    /// Contrastive steps per run of the train_clip check.
    #[arg(long, default_value_t = 200)]
    clip_steps: usize,
}

/// One line of the final table.
struct Row {
    check: String,
    measured: String,
    limit: String,
    pass: bool,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    /// A measured value that must not exceed `limit`.
    fn at_most(&mut self, check: impl Into<String>, value: f64, limit: f64) {
        self.push(check, format!("{value:.3e}"), format!("<= {limit:.0e}"), value <= limit);
    }

    /// A measured value that must exceed `limit`.
    fn above(&mut self, check: impl Into<String>, value: f64, limit: f64) {
        self.push(check, format!("{value:.6}"), format!("> {limit}"), value > limit);
    }

    fn push(&mut self, check: impl Into<String>, measured: String, limit: String, pass: bool) {
        let row = Row { check: check.into(), measured, limit, pass };
        println!("  {:<72} {:>14} {:>10}  {}", row.check, row.measured, row.limit, verdict(row.pass));
        self.0.push(row);
    }

    fn print(&self) {
        println!("\n{:<74} {:>14} {:>10}  result", "check", "measured", "limit");
        for row in &self.0 {
            println!("{:<74} {:>14} {:>10}  {}", row.check, row.measured, row.limit, verdict(row.pass));
        }
        let failed = self.0.iter().filter(|r| !r.pass).count();
        println!("{} checks, {failed} failed", self.0.len());
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// ‖a − b‖ / ‖b‖ in f64 (b the reference), with both moved to the CPU.
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_device(Device::Cpu).to_kind(Kind::Double), b.to_device(Device::Cpu).to_kind(Kind::Double));
    let diff = (&a - &b).norm().double_value(&[]);
    let reference = b.norm().double_value(&[]);
    let value = diff / reference;
    if value.is_nan() {
        f64::INFINITY // NaN never passes
    } else {
        value
    }
}

/// The least row-wise cosine similarity between `a` and `b` `[N, D]`.
fn least_cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_device(Device::Cpu).to_kind(Kind::Double), b.to_device(Device::Cpu).to_kind(Kind::Double));
    let dot = (&a * &b).sum_dim_intlist([-1].as_slice(), false, Kind::Double);
    let norms = a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false);
    let value = (dot / norms).min().double_value(&[]);
    if value.is_nan() {
        f64::NEG_INFINITY
    } else {
        value
    }
}

fn tiny_vit() -> ClipConfig {
    ClipConfig {
        embed_dim: 32,
        image_resolution: 32,
        vision: VisionConfig::Vit(VitConfig { width: 128, layers: 2, heads: 2, patch_size: 8 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 128, heads: 2, layers: 2 },
    }
}

fn tiny_resnet() -> ClipConfig {
    ClipConfig {
        embed_dim: 24,
        image_resolution: 64,
        vision: VisionConfig::ResNet(ResNetConfig { layers: [1, 2, 1, 1], width: 8, heads: 4 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 64, heads: 1, layers: 1 },
    }
}

/// Token rows as the tokenizer makes them: start token, random ids, end
/// token (the highest id, which the text tower finds by argmax), zeros.
fn random_tokens(batch: i64, context: i64) -> Tensor {
    let rows: Vec<Tensor> = (0..batch)
        .map(|i| {
            let words = 3 + (i * 7) % (context - 5);
            let body = Tensor::randint_low(1, 49406, [words], (Kind::Int64, Device::Cpu));
            let start = Tensor::from_slice(&[49406i64]);
            let end = Tensor::from_slice(&[49407i64]);
            let pad = Tensor::zeros([context - words - 2], (Kind::Int64, Device::Cpu));
            Tensor::cat(&[start, body, end, pad], 0)
        })
        .collect();
    Tensor::stack(&rows, 0)
}

fn check_clip(table: &mut Table, name: &str, config: &ClipConfig, cuda: Device) -> Result<()> {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let cpu_model = Clip::new(&vs.root(), config);
    let weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let res = config.image_resolution;
    let images = Tensor::randn([8, 3, res, res], (Kind::Float, Device::Cpu));
    let tokens = random_tokens(8, config.text.context_length);
    let cpu_image = cpu_model.encode_image(&images)?;
    let cpu_text = cpu_model.encode_text(&tokens)?;

    // Loading through `from_tensors` onto CUDA is the path `clip::load` takes.
    let copy = |kind| -> Result<clip::LoadedClip> {
        let tensors = weights.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        let mut loaded = clip::weights::from_tensors(tensors, cuda).context("copying the CLIP weights to CUDA")?;
        loaded.set_kind(kind);
        Ok(loaded)
    };
    let gpu = copy(Kind::Float)?;
    for cudnn in [true, false] {
        Cuda::set_user_enabled_cudnn(cudnn);
        let image = gpu.clip.encode_image(&images)?;
        let text = gpu.clip.encode_text(&tokens)?;
        let label = if cudnn { "cuDNN on, TF32 convolutions allowed" } else { "cuDNN off" };
        // TF32 (10-bit mantissa) convolutions land near 3e-4; true fp32 far under 1e-4.
        let image_limit = if cudnn { 3e-3 } else { 1e-4 };
        table.at_most(
            format!("clip {name} fp32 image rel. err. vs CPU ({label})"),
            relative_error(&image, &cpu_image),
            image_limit,
        );
        table.at_most(
            format!("clip {name} fp32 text rel. err. vs CPU ({label})"),
            relative_error(&text, &cpu_text),
            1e-4,
        );
    }
    Cuda::set_user_enabled_cudnn(true);
    for (kind, least) in [(Kind::Half, 0.999), (Kind::BFloat16, 0.99)] {
        let gpu = copy(kind)?;
        let image = gpu.clip.encode_image(&images)?;
        let text = gpu.clip.encode_text(&tokens)?;
        if image.kind() != kind || text.kind() != kind {
            bail!("clip {name}: {kind:?} model gave {:?} / {:?} features", image.kind(), text.kind());
        }
        table.above(
            format!("clip {name} {kind:?} image cosine vs CPU fp32 (least)"),
            least_cosine(&image, &cpu_image),
            least,
        );
        table.above(
            format!("clip {name} {kind:?} text cosine vs CPU fp32 (least)"),
            least_cosine(&text, &cpu_text),
            least,
        );
    }
    Ok(())
}

/// Features of `classes` Gaussian clusters, and unrelated outliers.
fn head_data(n: i64, d: i64, classes: i64, outliers: i64) -> (Tensor, Tensor, Tensor) {
    tch::manual_seed(7);
    let means = Tensor::randn([classes, d], (Kind::Float, Device::Cpu)) * 0.5;
    let labels = Tensor::randint(classes, [n], (Kind::Int64, Device::Cpu));
    let features = means.index_select(0, &labels) + Tensor::randn([n, d], (Kind::Float, Device::Cpu));
    let outliers = Tensor::randn([outliers, d], (Kind::Float, Device::Cpu));
    (features, labels, outliers)
}

fn check_train_head(table: &mut Table, cuda: Device) -> Result<()> {
    let (x, y, o) = head_data(2000, 64, 10, 500);
    let cfg = |device| HeadConfig { epochs: 20, device, ..Default::default() };
    let cpu = train_head(&x, &y, Some(&o), 10, &cfg(Device::Cpu))?;
    let gpu = train_head(&x, &y, Some(&o), 10, &cfg(cuda))?;
    let again = train_head(&x, &y, Some(&o), 10, &cfg(cuda))?;
    let (cpu_last, gpu_last) = (cpu.log.last().context("no epochs")?, gpu.log.last().context("no epochs")?);
    println!(
        "  train_head final epoch: CPU loss {:.5} acc {:.4}; CUDA loss {:.5} acc {:.4}",
        cpu_last.loss, cpu_last.train_accuracy, gpu_last.loss, gpu_last.train_accuracy
    );
    table.at_most(
        "train_head same seed, two CUDA runs: weights max abs diff",
        (&gpu.weight - &again.weight)
            .abs()
            .max()
            .double_value(&[])
            .max((&gpu.bias - &again.bias).abs().max().double_value(&[])),
        0.0,
    );
    table.at_most(
        "train_head CUDA vs CPU: |final loss diff| / CPU loss",
        (gpu_last.loss - cpu_last.loss).abs() / cpu_last.loss,
        5e-2,
    );
    table.at_most(
        "train_head CUDA vs CPU: |final train accuracy diff|",
        (gpu_last.train_accuracy - cpu_last.train_accuracy).abs(),
        2e-2,
    );
    // Informational: differs because each device draws its own init and shuffles.
    println!(
        "  train_head CUDA vs CPU weights rel. err. {:.3e} (different random streams, not a check)",
        relative_error(&gpu.weight, &cpu.weight)
    );

    // benches/train_oe.rs's size.
    let (n, d, c, m, epochs) = (20000, 512, 100, 5000, 3usize);
    let (x, y, o) = head_data(n, d, c, m);
    let _ = train_head(&x, &y, Some(&o), c, &HeadConfig { epochs: 1, device: cuda, ..Default::default() })?; // warm-up
    for device in [cuda, Device::Cpu] {
        let start = Instant::now();
        let _ = train_head(&x, &y, Some(&o), c, &HeadConfig { epochs, device, ..Default::default() })?;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "  train_head N={n} D={d} C={c} outliers={m} on {device:?}: {:.3} epochs/s ({epochs} epochs in {seconds:.2} s)",
            epochs as f64 / seconds
        );
    }
    Ok(())
}

fn check_decoder(table: &mut Table, cuda: Device) -> Result<()> {
    let words: Vec<String> = (0..596).map(|i| format!("w{i}")).collect();
    let vocab = WordVocab::build(&[words.join(" ")], 1);
    let config = DecoderConfig::small(vocab.tokens().len() as i64, 128, 2, 2);
    tch::manual_seed(3);
    let mut cpu = BertGenerationDecoder::new(config.clone(), Device::Cpu)?;
    // Random init (std 0.02) leaves ranks 31..55 of the tied LM head a few
    // thousandths apart; scaling the embeddings tenfold spreads them well past
    // float rounding, so equal words test the maths, not luck with ties.
    tch::no_grad(|| {
        for (name, mut t) in cpu.var_store_mut().variables() {
            if name.contains("word_embeddings") {
                let _ = t.g_mul_scalar_(10.0);
            }
        }
    });
    let weights = cpu.state_dict();
    let gpu = BertGenerationDecoder::from_weights(&weights, Some(2), cuda, Path::new("random weights"))?;

    let clip = Tensor::randn([16, 64], (Kind::Float, Device::Cpu));
    let ids = Tensor::randint_low(4, config.vocab_size, [16, 7], (Kind::Int64, Device::Cpu));
    let logits = |model: &BertGenerationDecoder| -> Result<Tensor> {
        let enc = clip_to_encoder_states(&clip.to_device(model.device()), config.hidden_size, model.kind())?;
        tch::no_grad(|| model.forward(&ids.to_device(model.device()), &enc, None, false))
    };
    table.at_most("decoder fp32 logits rel. err. CUDA vs CPU", relative_error(&logits(&gpu)?, &logits(&cpu)?), 1e-4);

    for feed_only_bos in [false, true] {
        let opts = GenerateOptions { feed_only_bos, ..Default::default() };
        let on_cpu = outlier_words(&cpu, &vocab, &clip, &opts)?;
        let on_gpu = outlier_words(&gpu, &vocab, &clip, &opts)?;
        let differing =
            on_cpu.iter().zip(&on_gpu).filter(|(a, b)| a != b).count() + on_cpu.len().abs_diff(on_gpu.len());
        table.push(
            format!("decoder outlier_words CUDA == CPU (feed_only_bos {feed_only_bos})"),
            format!("{differing}/{} differ", on_cpu.len()),
            "0 differ".into(),
            differing == 0 && !on_cpu.is_empty(),
        );
    }
    Ok(())
}

/// The demo's CLIP (pipelines/demo.toml, train_clip's defaults) on 32x32 images.
fn demo_clip() -> ClipConfig {
    ClipConfig {
        embed_dim: 64,
        image_resolution: 32,
        vision: VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 16, heads: 8 }),
        text: TextConfig { context_length: 32, vocab_size: 49408, width: 64, heads: 1, layers: 2 },
    }
}

/// Trains the demo's CLIP on `device` from `init` (a VarStore to copy the
/// initial weights from), or from weights drawn on `device` with seed 1.
fn train_clip_curve(
    pairs: &Pairs,
    device: Device,
    init: Option<&nn::VarStore>,
    options: &ContrastiveOptions,
) -> Result<(Vec<StepLog>, f64)> {
    tch::manual_seed(1);
    let mut vs = nn::VarStore::new(device);
    let model = Clip::new(&vs.root(), &demo_clip());
    if let Some(init) = init {
        vs.copy(init).context("copying the initial weights")?;
    }
    let start = Instant::now();
    let log = train_contrastive(&model, &vs, pairs, options, options.steps / 10, |_| {})?;
    Ok((log, start.elapsed().as_secs_f64()))
}

fn check_train_clip(table: &mut Table, cuda: Device, steps: usize, variants: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let world = WorldConfig::new(1, 32, &["arrow", "circle", "crescent", "cross", "ring"].map(String::from))?;
    write_set(&world, WorldSet::Corpus, 20_000, dir.path())?;
    let corpus = CaptionCorpus::open(dir.path(), "captions.json", "images")?;
    let samples = corpus.images.iter().map(|p| Sample { path: p.clone(), label: 0 }).collect();
    let batches = Batches::new(samples, BatchOptions { batch_size: 1024, n_px: 32, ..Default::default() })?;
    let parts = batches.map(|b| b.map(|b| b.images)).collect::<Result<Vec<_>, _>>()?;
    let images = Tensor::cat(&parts, 0);
    let tokens = Tokenizer::new()?.tokenize(&corpus.captions, 32, true)?;
    let image_of_text: Vec<i64> = corpus.image_of_caption.iter().map(|&i| i as i64).collect();
    let pairs = Pairs { images: &images, tokens: &tokens, image_of_text: &image_of_text };
    // The demo's recipe (pipelines/demo.toml).
    let options = ContrastiveOptions {
        steps,
        batch_size: 128,
        lr: 0.002,
        text_lr_factor: 0.125,
        warmup: 50,
        weight_decay: 0.1,
        seed: 1,
    };

    tch::manual_seed(1);
    let init = nn::VarStore::new(Device::Cpu);
    let _ = Clip::new(&init.root(), &demo_clip());
    let (cpu, cpu_s) = train_clip_curve(&pairs, Device::Cpu, Some(&init), &options)?;
    let (gpu, gpu_s) = train_clip_curve(&pairs, cuda, Some(&init), &options)?;
    let mut curves = vec![("cpu", cpu, cpu_s), ("cuda, cpu init", gpu, gpu_s)];
    if variants && cuda != Device::Cpu {
        Cuda::set_user_enabled_cudnn(false);
        let (log, s) = train_clip_curve(&pairs, cuda, Some(&init), &options)?;
        Cuda::set_user_enabled_cudnn(true);
        curves.push(("cuda, no cuDNN", log, s));
        let (log, s) = train_clip_curve(&pairs, cuda, None, &options)?;
        curves.push(("cuda, cuda init", log, s));
    }
    println!("  loss (in-batch accuracy) every {} steps; batch 128, 20000 world pairs", steps / 10);
    for (name, log, seconds) in &curves {
        let points: Vec<String> = log.iter().map(|r| format!("{:.3} ({:.2})", r.loss, r.batch_accuracy)).collect();
        println!("  {name:<16} {seconds:>6.1}s  {}", points.join("  "));
    }
    let last = |log: &[StepLog]| log.last().map(|r| r.loss).unwrap_or(f64::NAN);
    let gap = (last(&curves[1].1) - last(&curves[0].1)).abs();
    // The two runs share weights and batches; cuDNN's TF32 convolutions and
    // a different reduction order make them drift apart, not part ways.
    table.at_most(
        "train_contrastive CUDA vs CPU, same start: |loss gap| at the last step",
        if gap.is_nan() { f64::INFINITY } else { gap },
        0.15,
    );
    Ok(())
}

/// build.rs keeps libtorch_cuda.so (reached only through static
/// registration) in the worker and test binaries alone, so an example has no
/// CUDA unless it loads the library itself, before libtorch is first asked.
fn load_libtorch_cuda() {
    // SAFETY: dlopen of a constant name; the handle lives as long as the process.
    let handle = unsafe { libc::dlopen(c"libtorch_cuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        println!("(libtorch_cuda.so not loaded: this libtorch may be a CPU build)");
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    load_libtorch_cuda();
    println!("libtorch: CUDA available {}, {} device(s)", Cuda::is_available(), Cuda::device_count());
    let cuda = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" if Cuda::is_available() => {
            println!("cuDNN available {}, version {}", Cuda::cudnn_is_available(), tch::utils::version_cudnn());
            Device::Cuda(0)
        }
        "cuda" => bail!(
            "libtorch sees no CUDA device: run this on a machine with a GPU, with a CUDA build of \
             libtorch whose libtorch_cuda.so the binary can load"
        ),
        other => bail!("--device {other}: use cuda or cpu"),
    };
    let mut table = Table::default();
    let start = Instant::now();
    if !args.only_train_clip {
        println!("native CLIP");
        check_clip(&mut table, "ViT", &tiny_vit(), cuda)?;
        check_clip(&mut table, "ResNet", &tiny_resnet(), cuda)?;
        println!("train_head");
        check_train_head(&mut table, cuda)?;
        println!("decoder");
        check_decoder(&mut table, cuda)?;
    }
    println!("train_contrastive");
    check_train_clip(&mut table, cuda, args.clip_steps, args.clip_variants)?;
    println!("(checks took {:.1} s)", start.elapsed().as_secs_f64());
    table.print();
    if table.0.iter().any(|r| !r.pass) {
        bail!("some CUDA checks failed");
    }
    Ok(())
}
