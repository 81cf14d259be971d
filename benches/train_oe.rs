//! `train_oe` speed against the same loop in Python PyTorch, on the same
//! cached features and cores: epochs per second, side by side in one run.
//! Also the tensor backend (the tch steps that CUDA uses) run on the CPU, and
//! each side's CPU time, which a busy machine disturbs less than wall time.
//!
//!     cargo bench --bench train_oe [-- --n 20000 --dim 512 --classes 100 --outliers 5000 --epochs 3]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use toe_pipe::formats;
use toe_pipe::toe::train_head::{train_head, train_head_with, Backend, EpochKind, HeadConfig};

fn arg(name: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds used by this process so far.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let (n, d, c, m, epochs) =
        (arg("--n", 20000), arg("--dim", 512), arg("--classes", 100), arg("--outliers", 5000), arg("--epochs", 3));
    tch::manual_seed(0);
    let labels = Tensor::randint(c, [n], (Kind::Int64, Device::Cpu));
    let features = Tensor::randn([n, d], (Kind::Float, Device::Cpu));
    let outliers = Tensor::randn([m, d], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in [("x.npy", &features), ("y.npy", &labels), ("o.npy", &outliers)] {
        formats::write_npy_tensor(&dir.path().join(name), t).unwrap();
    }
    // train_head and the Python script each set one intra-op thread
    println!("train_oe: N={n} D={d} C={c} outliers={m}, batch 32 + 32, {epochs} epochs, one torch thread per side");

    // Full ID passes with the outliers cycling, as the Python loop does: the
    // same number of steps on both sides (a zip epoch would be shorter).
    let cfg = HeadConfig { epochs: epochs as usize, epoch: EpochKind::Cycle, ..Default::default() };
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let head = train_head(&features, &labels, Some(&outliers), c, &cfg).unwrap();
    let (ours, ours_cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "toe-pipe:        {:.3} s ({:.3} epochs/s), CPU {:.3} s, final loss {:.4}",
        ours,
        epochs as f64 / ours,
        ours_cpu,
        head.log.last().unwrap().loss
    );

    let (start, cpu) = (Instant::now(), cpu_seconds());
    let head = train_head_with(Backend::Tensor, &features, &labels, Some(&outliers), c, &cfg).unwrap();
    let (tensor, tensor_cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "  (tch steps:    {:.3} s ({:.3} epochs/s), CPU {:.3} s, final loss {:.4})",
        tensor,
        epochs as f64 / tensor,
        tensor_cpu,
        head.log.last().unwrap().loss
    );

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/train_oe_pytorch.py");
    let out = Command::new(python).arg(script).arg(dir.path()).arg(epochs.to_string()).output().expect("venv python");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!("python failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let seconds: Vec<f64> = text.split_whitespace().map(|v| v.parse().expect("seconds from the python side")).collect();
    let [theirs, theirs_cpu] = seconds[..] else {
        panic!("expected wall and CPU seconds from the python side, got {text:?}")
    };
    println!("PyTorch:         {:.3} s ({:.3} epochs/s), CPU {:.3} s", theirs, epochs as f64 / theirs, theirs_cpu);
    println!(
        "ratio (toe-pipe epochs/s over PyTorch's): {:.2}x (CPU time: {:.2}x; tch steps: {:.2}x)",
        theirs / ours,
        theirs_cpu / ours_cpu,
        theirs / tensor
    );
}
