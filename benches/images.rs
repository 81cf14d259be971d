//! CLIP image preprocessing throughput: toe-pipe against Pillow +
//! torchvision, side by side on the same JPEG files and the same cores.
//!
//!     cargo bench --bench images
//!
//! Settings (environment): TOE_BENCH_IMAGES (default 320 JPEGs, ImageNet-like
//! 500x375 and similar), TOE_BENCH_THREADS (2: rayon threads for toe-pipe,
//! DataLoader workers for Python), TOE_BENCH_BATCH (64), TOE_BENCH_N_PX
//! (224), TOE_BENCH_ROUNDS (5; each round runs Python then toe-pipe, so that
//! load from other processes hits both alike; the median ratio is the
//! result).
//!
//! Python side: `benches/images_pillow.py`, torchvision `ImageFolder` with
//! OpenAI CLIP's transform through a `DataLoader`, timed after its workers
//! are warm. Both sides read files from the page cache (all read once first)
//! and produce normalised `[B, 3, n, n]` float tensors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use toe_pipe::images::{BatchOptions, Batches, ClipPreprocess, ImageFolder, RgbConversion};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn python(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh", python.display());
    let out = Command::new(&python)
        .arg(root.join("benches/images_pillow.py"))
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "images_pillow.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let count = setting("TOE_BENCH_IMAGES", 320);
    let threads = setting("TOE_BENCH_THREADS", 2);
    let batch = setting("TOE_BENCH_BATCH", 64);
    let n_px = setting("TOE_BENCH_N_PX", 224);
    let rounds = setting("TOE_BENCH_ROUNDS", 5).max(1);

    let dir = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = dir.path().join("jpegs");
    python(&["make", data.to_str().unwrap(), &count.to_string()]);
    let folder = ImageFolder::open(&data).expect("benchmark folder");
    for s in folder.samples() {
        std::fs::read(&s.path).expect("warm the page cache");
    }
    println!(
        "{} JPEGs (ImageNet-like sizes), n_px {n_px}, batch {batch}, {threads} threads/workers, {} cores online",
        folder.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // Where toe-pipe's time goes, one thread (buffers reused as in batches).
    let preprocess = ClipPreprocess::new(n_px, RgbConversion::OnLoad);
    let (mut decode_s, mut preprocess_s) = (0.0, 0.0);
    let mut out = vec![0f32; preprocess.tensor_len()];
    let mut pixels = Vec::new();
    for s in folder.samples() {
        let bytes = std::fs::read(&s.path).expect("read");
        let t = Instant::now();
        let img = preprocess.decode_reusing(&bytes, std::mem::take(&mut pixels)).expect("decode");
        decode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        preprocess.write_tensor(&img, &mut out);
        preprocess_s += t.elapsed().as_secs_f64();
        pixels = img.into_buffer();
    }
    let per = |s: f64| 1e3 * s / folder.len() as f64;
    println!(
        "toe-pipe, one thread: {:.2} ms/image = decode {:.2} (libjpeg-turbo, the rows/columns \
         the crop needs) + resize, crop, normalise {:.2}",
        per(decode_s + preprocess_s),
        per(decode_s),
        per(preprocess_s)
    );

    println!("{:>5} {:>22} {:>22} {:>7}", "round", "Pillow+torchvision/s", "toe-pipe images/s", "ratio");
    let (mut py_rates, mut rs_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut py_one_process = Vec::new();
    for round in 1..=rounds {
        let line =
            python(&["bench", data.to_str().unwrap(), &threads.to_string(), &batch.to_string(), &n_px.to_string()]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("python json");
        let py = v["dataloader_images_per_s"].as_f64().expect("images per second");
        py_one_process.push(v["one_process_ms_per_image"].as_f64().expect("ms per image"));

        let options = BatchOptions { batch_size: batch, n_px, threads, ..BatchOptions::default() };
        let t = Instant::now();
        let mut seen = 0;
        for b in Batches::new(folder.samples().to_vec(), options).expect("batches") {
            seen += b.expect("batch").labels.len();
        }
        let rs = seen as f64 / t.elapsed().as_secs_f64();
        println!("{round:>5} {py:>22.1} {rs:>22.1} {:>6.2}x", rs / py);
        py_rates.push(py);
        rs_rates.push(rs);
        ratios.push(rs / py);
    }
    println!(
        "median {:>21.1} {:>22.1} {:>6.2}x  (toe-pipe / Pillow+torchvision; target >= 2x)",
        median(py_rates),
        median(rs_rates),
        median(ratios)
    );
    println!(
        "Pillow+torchvision, one process without DataLoader: {:.2} ms/image (median of rounds)",
        median(py_one_process)
    );
}
