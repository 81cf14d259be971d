//! `train_oe` speed against the same loop in Python PyTorch, on the same
//! cached features and cores: epochs per second, side by side in one run.
//!
//!     cargo bench --bench train_oe [-- --n 20000 --dim 512 --classes 100 --outliers 5000 --epochs 3]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use toe_pipe::formats;
use toe_pipe::toe::train_head::{train_head, HeadConfig};

fn arg(name: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let (n, d, c, m, epochs) = (arg("--n", 20000), arg("--dim", 512), arg("--classes", 100), arg("--outliers", 5000), arg("--epochs", 3));
    tch::manual_seed(0);
    let labels = Tensor::randint(c, [n], (Kind::Int64, Device::Cpu));
    let features = Tensor::randn([n, d], (Kind::Float, Device::Cpu));
    let outliers = Tensor::randn([m, d], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in [("x.npy", &features), ("y.npy", &labels), ("o.npy", &outliers)] {
        formats::write_npy_tensor(&dir.path().join(name), t).unwrap();
    }
    println!("train_oe: N={n} D={d} C={c} outliers={m}, batch 32 + 32, {epochs} epochs, {} torch threads", tch::get_num_threads());

    let cfg = HeadConfig { epochs: epochs as usize, ..Default::default() };
    let start = Instant::now();
    let head = train_head(&features, &labels, Some(&outliers), c, &cfg).unwrap();
    let ours = start.elapsed().as_secs_f64();
    println!("toe-pipe: {:.3} s ({:.3} epochs/s), final loss {:.4}", ours, epochs as f64 / ours, head.log.last().unwrap().loss);

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/train_oe_pytorch.py");
    let out = Command::new(python).arg(script).arg(dir.path()).arg(epochs.to_string()).output().expect("venv python");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!("python failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let theirs: f64 = text.trim().parse().expect("seconds from the python side");
    println!("PyTorch:  {:.3} s ({:.3} epochs/s)", theirs, epochs as f64 / theirs);
    println!("ratio (toe-pipe epochs/s over PyTorch's): {:.2}x", theirs / ours);
}
