//! OoD scores of image features, one function per score, each with its
//! paper and formula. Every score is higher for more ID-like images (the
//! metrics take ID as the positive class). Three read the logits of a
//! trained head, two are zero-shot on CLIP (image against text features),
//! two live in the image feature space.
//!
//! Cosine similarities are of L2-normalised rows. Large products (images
//! against thousands of words or a million training images) are computed in
//! chunks of images, so memory stays bounded.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::class_stats::l2_normalize;
use super::mahalanobis::mahalanobis_scores;

/// Elements per chunk of a similarity matrix (64 Mi floats, 256 MiB).
const CHUNK_ELEMENTS: i64 = 1 << 26;

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous())?)
}

/// Image rows per chunk when each row meets `columns` others.
fn chunk_rows(columns: i64) -> i64 {
    (CHUNK_ELEMENTS / columns.max(1)).max(1)
}

fn same_width(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    let (_, da) = a.size2()?;
    let (_, db) = b.size2()?;
    if da != db {
        bail!("image features are {da}-d but {what} are {db}-d; they must come from the same CLIP");
    }
    Ok(())
}

/// Cosine similarities `[N, M]` of the rows of `a` `[N, D]` and `b` `[M, D]`.
fn cosine(a: &Tensor, b: &Tensor) -> Tensor {
    l2_normalize(&a.to_kind(Kind::Float)).matmul(&l2_normalize(&b.to_kind(Kind::Float)).transpose(0, 1))
}

/// Energy score (Liu, Wang, Owens and Li, "Energy-based Out-of-distribution
/// Detection", NeurIPS 2020): S(x) = T · log Σ_c exp(f_c(x) / T), the
/// negated free energy of the head's logits f(x) at temperature T. TOE's
/// score.
pub fn energy(logits: &Tensor, temperature: f64) -> Result<Vec<f32>> {
    super::energy::negative_energy(logits, temperature)
}

/// Maximum softmax probability, MSP (Hendrycks and Gimpel, "A Baseline for
/// Detecting Misclassified and Out-of-Distribution Examples in Neural
/// Networks", ICLR 2017): S(x) = max_c softmax(f(x))_c.
pub fn msp(logits: &Tensor) -> Result<Vec<f32>> {
    to_vec(&logits.to_kind(Kind::Float).softmax(1, Kind::Float).amax([1i64].as_slice(), false))
}

/// MaxLogit (Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt
/// and Song, "Scaling Out-of-Distribution Detection for Real-World
/// Settings", ICML 2022): S(x) = max_c f_c(x).
pub fn max_logit(logits: &Tensor) -> Result<Vec<f32>> {
    to_vec(&logits.to_kind(Kind::Float).amax([1i64].as_slice(), false))
}

/// Maximum concept matching, MCM (Ming, Cai, Gu, Sun and Li, "Delving into
/// Out-of-Distribution Detection with Vision-Language Representations",
/// NeurIPS 2022): S(x) = max_c exp(s_c(x) / τ) / Σ_j exp(s_j(x) / τ), with
/// s_c(x) = cos(x, t_c) the cosine of the image features to the text
/// features t_c of the prompt of class c (the paper: "a photo of a
/// <class>.", τ = 1). Zero-shot: no training.
pub fn mcm(image: &Tensor, class_text: &Tensor, temperature: f64) -> Result<Vec<f32>> {
    same_width("the class text features", image, class_text)?;
    let s = cosine(image, class_text) / temperature;
    to_vec(&s.softmax(1, Kind::Float).amax([1i64].as_slice(), false))
}

/// CLIP's zero-shot classification: argmax_c cos(x, t_c).
pub fn zero_shot_predictions(image: &Tensor, class_text: &Tensor) -> Result<Vec<i64>> {
    same_width("the class text features", image, class_text)?;
    Ok(Vec::<i64>::try_from(&cosine(image, class_text).argmax(1, false))?)
}

/// NegLabel's negative mining, NegMining (Jiang, Liu, Lv, Dong, Han, Lu,
/// Zhang and Zhu, "Negative Label Guided OOD Detection with Pretrained
/// Vision-Language Models", ICLR 2024): for each candidate word ẽ_i, its
/// distance to the ID labels e_1..e_K is d_i = percentile_η({−cos(ẽ_i,
/// e_k)}_k) (linear interpolation between order statistics, numpy's
/// default; the paper's η = 0.05, so d_i is about minus the cosine to the
/// nearest ID labels, robust to one stray label); the `count` words with
/// the largest d_i, the farthest from every ID label, are the negative
/// labels (the paper's M = 10,000 of about 70,000 WordNet words). Returns
/// their indices into `word_text`, farthest first (ties: lower index).
pub fn neglabel_mine(class_text: &Tensor, word_text: &Tensor, count: usize, percentile: f64) -> Result<Vec<i64>> {
    same_width("the word text features", class_text, word_text)?;
    if !(0.0..=1.0).contains(&percentile) {
        bail!("the NegLabel percentile {percentile} must be within 0..=1");
    }
    let (words, classes) = (word_text.size2()?.0, class_text.size2()?.0);
    if words == 0 || classes == 0 {
        bail!("NegLabel needs class and word text features; got {classes} classes and {words} words");
    }
    let (sorted, _) = (-cosine(word_text, class_text)).sort(1, false);
    let position = percentile * (classes - 1) as f64;
    let (lo, hi) = (position.floor() as i64, (position.ceil() as i64).min(classes - 1));
    let frac = position - lo as f64;
    let low = sorted.select(1, lo);
    let distance = &low + (sorted.select(1, hi) - &low) * frac;
    let distance = Vec::<f32>::try_from(&distance.contiguous())?;
    let mut order: Vec<usize> = (0..distance.len()).collect();
    order.sort_by(|&a, &b| distance[b].total_cmp(&distance[a]).then(a.cmp(&b)));
    Ok(order.into_iter().take(count).map(|i| i as i64).collect())
}

/// NegLabel's score (Jiang et al., ICLR 2024, as [`neglabel_mine`]):
/// S(x) = Σ_k exp(cos(x, e_k) / τ) / (Σ_k exp(cos(x, e_k) / τ) + Σ_j
/// exp(cos(x, ẽ_j) / τ)), the share of the image's similarity that goes to
/// the ID labels e_k rather than to the negative labels ẽ_j (the paper's τ
/// = 0.01). With `groups` = n_g > 1, the paper's grouping strategy: the
/// negative labels are split into n_g groups, the score is computed with
/// each group alone and averaged. Our groups are fixed, not drawn at
/// random: negative j (in mined order) goes to group j mod n_g, so every
/// group spans the whole range of distances. Computed in log space, since
/// exp(1 / 0.01) overflows single precision.
pub fn neglabel(
    image: &Tensor,
    class_text: &Tensor,
    negatives: &Tensor,
    temperature: f64,
    groups: usize,
) -> Result<Vec<f32>> {
    same_width("the class text features", image, class_text)?;
    same_width("the negative label text features", image, negatives)?;
    let m = negatives.size2()?.0;
    if groups == 0 || groups as i64 > m {
        bail!("NegLabel: {groups} groups for {m} negative labels; every group needs at least one");
    }
    let group_index: Vec<Tensor> =
        (0..groups as i64).map(|g| Tensor::from_slice(&(g..m).step_by(groups).collect::<Vec<i64>>())).collect();
    let (class_text, negatives) =
        (l2_normalize(&class_text.to_kind(Kind::Float)), l2_normalize(&negatives.to_kind(Kind::Float)));
    let mut out = Vec::with_capacity(image.size2()?.0 as usize);
    let columns = class_text.size()[0] + m;
    for chunk in image.split(chunk_rows(columns), 0) {
        let x = l2_normalize(&chunk.to_kind(Kind::Float));
        let pos = x.matmul(&class_text.transpose(0, 1)) / temperature;
        let neg = x.matmul(&negatives.transpose(0, 1)) / temperature;
        let pos_lse = pos.logsumexp([1i64].as_slice(), false);
        let mut total = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
        for index in &group_index {
            let all = Tensor::cat(&[&pos, &neg.index_select(1, index)], 1);
            total += (&pos_lse - all.logsumexp([1i64].as_slice(), false)).exp();
        }
        out.extend(to_vec(&(total / groups as f64))?);
    }
    Ok(out)
}

/// Mahalanobis score (Lee, Lee, Lee and Shin, "A Simple Unified Framework
/// for Detecting Out-of-Distribution Samples and Adversarial Attacks",
/// NeurIPS 2018): S(x) = max_c −(x − μ_c)ᵀ Σ⁻¹ (x − μ_c), with class means
/// μ_c and the precision Σ⁻¹ of one covariance shared by all classes (as
/// `class_stats` writes them), on one layer's features and without the
/// paper's input pre-processing. x is L2-normalised first, as
/// `class_stats` normalises by default.
pub fn mahalanobis(features: &Tensor, means: &Tensor, precision: &Tensor) -> Result<Vec<f32>> {
    // mahalanobis_scores gives max_c -0.5 d_c^2 (TOE's caption filter).
    Ok(mahalanobis_scores(features, means, precision)?.into_iter().map(|s| 2.0 * s).collect())
}

/// KNN score (Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with
/// Deep Nearest Neighbors", ICML 2022): S(x) = −‖x/‖x‖ − z_(k)‖₂, minus
/// the distance from the normalised features of x to z_(k), its k-th
/// nearest neighbour among the L2-normalised ID train features. For unit
/// vectors ‖a − b‖² = 2 − 2 cos(a, b), so z_(k) is the k-th largest cosine.
pub fn knn(image: &Tensor, train: &Tensor, k: usize) -> Result<Vec<f32>> {
    same_width("the train features", image, train)?;
    let n = train.size2()?.0;
    if k == 0 || k as i64 > n {
        bail!("KNN with k = {k} needs at least k train features; there are {n}");
    }
    let train = l2_normalize(&train.to_kind(Kind::Float)).transpose(0, 1);
    let mut out = Vec::with_capacity(image.size2()?.0 as usize);
    for chunk in image.split(chunk_rows(n), 0) {
        let sims = l2_normalize(&chunk.to_kind(Kind::Float)).matmul(&train);
        let (top, _) = sims.topk(k as i64, 1, true, true);
        let kth = top.select(1, k as i64 - 1);
        out.extend(to_vec(&-((kth * -2.0 + 2.0).clamp_min(0.0).sqrt()))?);
    }
    Ok(out)
}
