//! The training steps of `train_head` in plain Rust on contiguous f32
//! buffers, for the CPU. A step (32 ID rows + 32 outlier rows) is two small
//! GEMMs — logits = inputs · head and grad = inputsᵀ · dlogits — plus a
//! softmax per row and Adam over the head. With tch that is ~40 ops whose
//! dispatch and allocation cost more than the arithmetic; here it is two
//! `matrixmultiply::sgemm` calls and a few loops over reused buffers.
//!
//! The random draws (epoch shuffles, outlier shuffles, noise) still come from
//! torch's seeded CPU generator, in the same order and shapes as the tensor
//! backend, so both backends train the same head.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::{EpochLog, HeadConfig, OutlierCursor, OutlierDomain};

/// Train `head` `[C, D + 1]` (CPU, float) on `x` `[N, D]` with labels `y`
/// (checked to lie in 0..C) and optional outliers `[M, D]`.
pub(super) fn train(
    x: &Tensor,
    y: &[i64],
    outliers: Option<&Tensor>,
    head: Tensor,
    cfg: &HeadConfig,
) -> Result<(Tensor, Vec<EpochLog>)> {
    let (c, k) = head.size2()?;
    let x_t = x.contiguous();
    let out_t = outliers.map(|o| o.contiguous());
    let data = Data {
        x: host_f32(&x_t)?,
        y,
        outliers: match &out_t {
            Some(o) => Some((host_f32(o)?, o.size()[0])),
            None => None,
        },
        d: (k - 1) as usize,
        c: c as usize,
    };
    // Kept transposed, [D + 1, C]: both GEMMs and the accuracy pass then
    // read it row by row, which packs faster than the [C, D + 1] layout.
    let head_t = Vec::<f32>::try_from(&head.tr().contiguous().view(-1))?;
    let (head_t, log) = run_fastest(&data, head_t, cfg)?;
    Ok((Tensor::from_slice(&head_t).view([k, c]).tr().contiguous(), log))
}

/// The training set as host slices.
struct Data<'a> {
    /// `[N, D]`
    x: &'a [f32],
    /// `[N]`, in 0..C
    y: &'a [i64],
    /// `[M, D]` and M
    outliers: Option<(&'a [f32], i64)>,
    d: usize,
    c: usize,
}

/// [`run`] compiled for the widest vector unit the CPU has: the element-wise
/// loops (noise injection, softmax, Adam) run 2-4x faster with 8 or 16 lanes
/// than with the baseline x86-64's 4. The arithmetic is the same (no fused
/// multiply-add), so the result does not depend on the CPU.
fn run_fastest(data: &Data, head_t: Vec<f32>, cfg: &HeadConfig) -> Result<(Vec<f32>, Vec<EpochLog>)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // Safety: the CPU supports AVX-512F, checked just above.
            return unsafe { run_avx512(data, head_t, cfg) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // Safety: the CPU supports AVX2, checked just above.
            return unsafe { run_avx2(data, head_t, cfg) };
        }
    }
    run(data, head_t, cfg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_avx512(data: &Data, head_t: Vec<f32>, cfg: &HeadConfig) -> Result<(Vec<f32>, Vec<EpochLog>)> {
    run(data, head_t, cfg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(data: &Data, head_t: Vec<f32>, cfg: &HeadConfig) -> Result<(Vec<f32>, Vec<EpochLog>)> {
    run(data, head_t, cfg)
}

/// The epochs: `head_t` is the head transposed, `[D + 1, C]`.
#[inline(always)]
fn run(data: &Data, mut head_t: Vec<f32>, cfg: &HeadConfig) -> Result<(Vec<f32>, Vec<EpochLog>)> {
    let Data { x, y, outliers, d, c } = *data;
    let n = y.len();
    let k = d + 1;
    let mut adam = Adam::new(head_t.len(), cfg.lr);
    let rows_max = cfg.batch_size + if outliers.is_some() { cfg.outlier_batch_size } else { 0 };
    let mut inputs = vec![0f32; rows_max * k]; // [rows, D + 1]: ID rows, then outlier rows
    let mut logits = vec![0f32; rows_max * c];
    let mut dlogits = vec![0f32; rows_max * c];
    let mut grad_t = vec![0f32; k * c];
    let mut cursor = outliers.map(|(_, m)| OutlierCursor::new(m, cfg.outlier_batch_size, cfg.epoch, Device::Cpu));
    let (mut out_order, mut seen_shuffles) = (Vec::<i64>::new(), 0u64);
    let take = outliers.map_or(0, |(_, m)| (cfg.outlier_batch_size as i64).min(m) as usize);
    // Drawn in place with `normal_`, which is what `randn_like` does.
    let noise_t = Tensor::empty([take as i64, d as i64], (Kind::Float, Device::Cpu));
    let mut noise = vec![0f32; take * d];
    let noise_std = cfg.noise_var.sqrt() as f32;

    let mut log = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let order = Vec::<i64>::try_from(&Tensor::f_randperm(n as i64, (Kind::Int64, Device::Cpu))?)?;
        if let Some(cursor) = cursor.as_mut() {
            cursor.start_epoch()?;
        }
        let (mut ce_sum, mut oe_sum, mut steps) = (0f64, 0f64, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            let pair = match cursor.as_mut() {
                Some(cursor) => match cursor.next()? {
                    Some(pair) => Some(pair),
                    None => break, // a zip epoch ran out of outliers
                },
                None => None,
            };
            let b = batch.len();
            for (row, &i) in inputs.chunks_exact_mut(k).zip(batch) {
                let i = i as usize;
                row[..d].copy_from_slice(&x[i * d..(i + 1) * d]);
                row[d] = 1.0;
            }
            let mut rows = b;
            if let (Some((out, _)), Some(cursor), Some((start, len))) = (outliers, cursor.as_ref(), pair) {
                if cursor.shuffles != seen_shuffles {
                    out_order = Vec::<i64>::try_from(&cursor.order)?;
                    seen_shuffles = cursor.shuffles;
                }
                let text = cfg.outlier_domain == OutlierDomain::Text;
                if text && cfg.noise_var != 0.0 {
                    // A partial last batch (zip epochs) draws only its rows,
                    // as `randn_like` on it would.
                    let mut rows = noise_t.narrow(0, 0, len);
                    let _ = rows.f_normal_(0.0, 1.0)?;
                    rows.f_copy_data(&mut noise, len as usize * d)?;
                }
                let idx = &out_order[start as usize..(start + len) as usize];
                for (j, (row, &i)) in inputs[b * k..].chunks_exact_mut(k).zip(idx).enumerate() {
                    let i = i as usize;
                    let feat = &mut row[..d];
                    feat.copy_from_slice(&out[i * d..(i + 1) * d]);
                    if text {
                        // the tensor backend's `inject_noise`
                        l2_normalize(feat);
                    }
                    if text && cfg.noise_var != 0.0 {
                        for (f, z) in feat.iter_mut().zip(&noise[j * d..(j + 1) * d]) {
                            *f += z * noise_std;
                        }
                        l2_normalize(feat);
                    }
                    row[d] = 1.0;
                }
                rows += len as usize;
            }

            // logits [rows, C] = inputs [rows, D + 1] · head_t [D + 1, C]
            gemm(rows, k, c, &inputs, (k, 1), &head_t, (c, 1), 0.0, &mut logits, c);

            // CE = mean over ID rows of logsumexp(z) - z_label;
            // d CE / d logits = (softmax - onehot) / B
            let mut ce = 0f64;
            for ((z, g), &i) in logits.chunks_exact(c).zip(dlogits.chunks_exact_mut(c)).zip(batch) {
                let label = y[i as usize] as usize;
                let (lse, sum) = exp_shifted(z, g);
                ce += f64::from(lse - z[label]);
                let scale = 1.0 / (sum * b as f32);
                g.iter_mut().for_each(|v| *v *= scale);
                g[label] -= 1.0 / b as f32;
            }
            ce_sum += ce / b as f64;

            // OE = mean over outlier rows of logsumexp(z) - mean_k z_k;
            // d OE / d logits = (softmax - 1/C) / B_out, times the OE weight
            let n_out = rows - b;
            if n_out > 0 {
                let mut oe = 0f64;
                let weight = (cfg.oe_weight / n_out as f64) as f32;
                let uniform = 1.0 / c as f32;
                for (z, g) in logits[b * c..rows * c].chunks_exact(c).zip(dlogits[b * c..rows * c].chunks_exact_mut(c))
                {
                    let (lse, sum) = exp_shifted(z, g);
                    oe += f64::from(lse - z.iter().sum::<f32>() / c as f32);
                    let scale = 1.0 / sum;
                    g.iter_mut().for_each(|v| *v = (*v * scale - uniform) * weight);
                }
                oe_sum += oe / n_out as f64;
            }

            // grad_t [D + 1, C] = inputsᵀ [D + 1, rows] · dlogits [rows, C]
            gemm(k, rows, c, &inputs, (1, k), &dlogits, (c, 1), 0.0, &mut grad_t, c);
            adam.step(&mut head_t, &grad_t);
            steps += 1;
        }
        let s = steps as f64;
        let (ce, oe) = (ce_sum / s, oe_sum / s);
        let train_accuracy = accuracy(x, y, &head_t, d, c);
        log.push(EpochLog { epoch: epoch + 1, loss: ce + cfg.oe_weight * oe, ce, oe, train_accuracy, steps });
    }
    Ok((head_t, log))
}

/// The data of a contiguous CPU float tensor, borrowed for as long as the
/// tensor is (training reads features in place rather than copying what may
/// be gigabytes).
fn host_f32(t: &Tensor) -> Result<&[f32]> {
    if t.kind() != Kind::Float || t.device() != Device::Cpu || !t.is_contiguous() {
        bail!("expected a contiguous CPU float tensor, got {:?} on {:?}", t.kind(), t.device());
    }
    let len = t.numel();
    if len == 0 {
        return Ok(&[]);
    }
    // Safety: the tensor is contiguous f32 on the CPU with `len` elements,
    // and the slice borrows `t`, which holds that storage alive; nothing
    // writes to it while training runs.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, len) })
}

/// `x / ||x||`, in place, as `l2_normalize` does (no epsilon: a zero row
/// becomes NaN there too).
#[inline(always)]
fn l2_normalize(x: &mut [f32]) {
    let norm = sum_of_squares(x).sqrt();
    x.iter_mut().for_each(|v| *v /= norm);
}

/// Σ x², accumulated in 16 lanes so that the compiler vectorises it (as
/// torch's reductions are); a sequential sum would be 16x slower.
#[inline(always)]
fn sum_of_squares(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder().iter().map(|v| v * v).sum::<f32>();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v * v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// `out = exp(z - max z)`; returns (logsumexp z, sum of out).
#[inline(always)]
fn exp_shifted(z: &[f32], out: &mut [f32]) -> (f32, f32) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (o, &v) in out.iter_mut().zip(z) {
        *o = exp_nonpositive(v - max);
    }
    let sum = out.iter().sum::<f32>();
    (max + sum.ln(), sum)
}

/// e^x for x <= 0 (a shifted logit), within 2 ulp, written so that a loop
/// of it vectorises (libm's expf is a call per element): e^x = 2^n e^r with
/// n = round(x / ln 2) and Cephes' degree-6 polynomial for e^r. Below -87
/// the result is clamped to e^-87 ≈ 1.6e-38, which is 0 to a softmax. NaN
/// stays NaN.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4; // x - n ln 2 in two parts
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^n from n's bits in `shifted` (n = bits - bits(ROUND), n in -126..=0)
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    e_r * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `c [m, n] = a [m, kk] · b [kk, n] + beta * c`, with a and b given by
/// (row stride, column stride) and c row-major with row stride `rsc`.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    kk: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if kk > 0 {
        assert!((m - 1) * rsa + (kk - 1) * csa < a.len(), "gemm: a too short");
        assert!((kk - 1) * rsb + (n - 1) * csb < b.len(), "gemm: b too short");
    }
    assert!((m - 1) * rsc + n - 1 < c.len(), "gemm: c too short");
    // Safety: the asserts above keep every element sgemm reads or writes
    // inside the slices; c does not alias a or b (it is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            kk,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Top-1 accuracy on `x` `[N, D]` of the head `head_t` `[D + 1, C]`, in
/// blocks of rows. Ties go to the first class and NaN counts as the
/// largest, as in torch's argmax.
#[inline(always)]
fn accuracy(x: &[f32], y: &[i64], head_t: &[f32], d: usize, c: usize) -> f64 {
    const BLOCK: usize = 1024;
    let bias = &head_t[d * c..];
    let mut logits = vec![0f32; BLOCK * c];
    let mut correct = 0usize;
    for (xs, ys) in x.chunks(BLOCK * d).zip(y.chunks(BLOCK)) {
        let rows = ys.len();
        // start from the bias, then add x · weightᵀ (head_t's first D rows)
        for row in logits[..rows * c].chunks_exact_mut(c) {
            row.copy_from_slice(bias);
        }
        gemm(rows, d, c, xs, (d, 1), head_t, (c, 1), 1.0, &mut logits, c);
        for (row, &label) in logits[..rows * c].chunks_exact(c).zip(ys) {
            let mut best = 0;
            for (class, &v) in row.iter().enumerate().skip(1) {
                let top = row[best];
                if (v > top || v.is_nan()) && !top.is_nan() {
                    best = class;
                }
            }
            correct += usize::from(best as i64 == label);
        }
    }
    correct as f64 / y.len() as f64
}

/// torch.optim.Adam's update (betas 0.9 / 0.999, eps 1e-8, no weight decay)
/// on one flat parameter, written as the tensor backend's `Adam` is.
struct Adam {
    lr: f64,
    step: i32,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

impl Adam {
    fn new(len: usize, lr: f64) -> Adam {
        Adam { lr, step: 0, exp_avg: vec![0.0; len], exp_avg_sq: vec![0.0; len] }
    }

    #[inline(always)]
    fn step(&mut self, param: &mut [f32], grad: &[f32]) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        self.step += 1;
        let bias1 = 1.0 - BETA1.powi(self.step);
        let bias2 = 1.0 - BETA2.powi(self.step);
        // the scalars in f32, as torch applies them to a float tensor
        let (w1, w2) = ((1.0 - BETA1) as f32, (1.0 - BETA2) as f32);
        let step_size = (-self.lr / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;
        let len = param.len();
        let (g, m, v) = (&grad[..len], &mut self.exp_avg[..len], &mut self.exp_avg_sq[..len]);
        for i in 0..len {
            m[i] += w1 * (g[i] - m[i]); // exp_avg.lerp_(grad, 1 - beta1)
            v[i] += w2 * (g[i] * g[i] - v[i]); // exp_avg_sq.lerp_(grad², 1 - beta2)
            param[i] += m[i] * step_size / (v[i].sqrt() / bias2_sqrt + 1e-8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_keeps_nan() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (got, want) = (exp_nonpositive(x), (x as f64).exp());
            assert!(((got as f64 - want) / want).abs() < 2.5e-7, "exp({x}) = {got}, want {want}");
        }
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert!(exp_nonpositive(-1e4) < 2e-38);
    }
}
