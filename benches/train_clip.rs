//! `train_clip`'s step against the same loop in PyTorch (OpenAI's model
//! code, benches/train_clip_pytorch.py), on the same batches' shapes and the
//! same cores, side by side in one run: the demo's pre-training is the
//! longest node of the README's main command, and this keeps it honest.
//!
//!     cargo bench --bench train_clip [-- --steps 40 --threads 2 --batch 128 --profile]
//!
//! The model is the demo's (`pipelines/demo.toml`: ResNet width 16 on 32x32
//! pictures, a 2-layer text transformer of width 64, 64-d embeddings);
//! pictures and captions are random, with the corpus' caption lengths.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use tch::{nn, Device, Kind, Tensor};
use toe_pipe::clip::train::{train_contrastive, ContrastiveOptions, Pairs};
use toe_pipe::clip::{Clip, ClipConfig, ResNetConfig, TextConfig, VisionConfig};
use toe_pipe::formats;

#[derive(Parser)]
struct Args {
    /// Timed steps per side (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// libtorch threads on both sides (the demo's `clip_cpus`).
    #[arg(long, default_value_t = 2)]
    threads: i32,
    #[arg(long, default_value_t = 16)]
    width: i64,
    #[arg(long, default_value_t = 64)]
    text_width: i64,
    #[arg(long, default_value_t = 2)]
    text_layers: i64,
    #[arg(long, default_value_t = 64)]
    embed_dim: i64,
    /// Also print PyTorch's profile of its step (by operator).
    #[arg(long)]
    profile: bool,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

/// CPU seconds used by this process so far.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The demo corpus' shape: 4 captions per picture, 8-17 tokens each
/// (start and end of text included), ids from the corpus' small vocabulary.
fn random_corpus(pictures: i64, resolution: i64) -> (Tensor, Tensor, Vec<i64>) {
    tch::manual_seed(1);
    let images = Tensor::randn([pictures, 3, resolution, resolution], (Kind::Float, Device::Cpu));
    let captions = pictures * 4;
    let context = 17;
    let tokens = Tensor::randint_low(300, 3000, [captions, context], (Kind::Int64, Device::Cpu));
    let lengths = Vec::<i64>::try_from(Tensor::randint_low(8, context + 1, [captions], (Kind::Int64, Device::Cpu)))
        .expect("lengths");
    let _ = tokens.select(1, 0).fill_(49406);
    for (row, &len) in lengths.iter().enumerate() {
        let row = tokens.get(row as i64);
        let _ = row.get(len - 1).fill_(49407);
        let _ = row.narrow(0, len, context - len).fill_(0);
    }
    let image_of_text = (0..captions).map(|i| i / 4).collect();
    (images, tokens, image_of_text)
}

fn main() {
    let args = Args::parse();
    tch::set_num_threads(args.threads);
    let config = ClipConfig {
        embed_dim: args.embed_dim,
        image_resolution: 32,
        vision: VisionConfig::ResNet(ResNetConfig {
            layers: [1; 4],
            width: args.width,
            heads: (args.width * 32 / 64).max(1),
        }),
        text: TextConfig {
            context_length: 17,
            vocab_size: 49408,
            width: args.text_width,
            heads: (args.text_width / 64).max(1),
            layers: args.text_layers,
        },
    };
    let (images, tokens, image_of_text) = random_corpus(4096, 32);
    let pairs = Pairs { images: &images, tokens: &tokens, image_of_text: &image_of_text };
    println!(
        "train_clip: batch {}, ResNet width {}, text width {} x {} layers, {} threads per side, {} timed steps",
        args.batch, args.width, args.text_width, args.text_layers, args.threads, args.steps
    );

    let train = |steps: usize| {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Clip::new(&vs.root(), &config);
        // The demo's recipe (pipelines/demo.toml); the Python side's too.
        let options =
            ContrastiveOptions { steps, batch_size: args.batch, lr: 2e-3, text_lr_factor: 0.125, ..Default::default() };
        train_contrastive(&model, &vs, &pairs, &options, steps, |_| {}).expect("training")
    };
    train(args.warmup);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let log = train(args.steps);
    let (ours, ours_cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let step_ms = |seconds: f64| seconds * 1000.0 / args.steps as f64;
    println!(
        "toe-pipe: {:.1} ms/step, CPU {:.1} ms/step, loss {:.3}",
        step_ms(ours),
        step_ms(ours_cpu),
        log.last().expect("a record").loss
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("PyTorch: skipped, no project venv ({} is missing; run scripts/setup.sh)", python.display());
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let image_of_text = Tensor::from_slice(&image_of_text);
    for (name, t) in [("images.npy", &images), ("tokens.npy", &tokens), ("image_of_text.npy", &image_of_text)] {
        formats::write_npy_tensor(&dir.path().join(name), t).expect("npy");
    }
    let numbers = [args.warmup, args.steps, args.batch].map(|n| n.to_string());
    let shapes =
        [args.threads as i64, args.width, args.text_width, args.text_layers, args.embed_dim].map(|n| n.to_string());
    let mut command = Command::new(&python);
    command.arg(root.join("benches/train_clip_pytorch.py")).arg(dir.path()).args(numbers).args(shapes);
    if args.profile {
        command.arg("--profile");
    }
    let out = command.output().expect("the venv's python");
    if !out.status.success() {
        panic!("python failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<f64> = text.split_whitespace().map(|v| v.parse().expect("numbers from the python side")).collect();
    let [theirs, theirs_cpu, loss] = values[..] else { panic!("expected three numbers from python, got {text:?}") };
    println!("PyTorch:  {:.1} ms/step, CPU {:.1} ms/step, loss {loss:.3}", step_ms(theirs), step_ms(theirs_cpu));
    println!("toe-pipe / PyTorch wall time: {:.2}", ours / theirs);
    if args.profile {
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
}
