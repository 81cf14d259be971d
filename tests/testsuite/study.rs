//! The image-vs-text study's ops: `synthesize_outliers` against VOS's own
//! sampling written in PyTorch (`MultivariateNormal.rsample`, `log_prob`,
//! `topk`) on the same draws, and the bad inputs of the study's ops through
//! the CLI. The study pipeline itself runs in `demo_pipeline`.

use crate::common;

use common::{save_npy, Ws};
use ndarray::Array2;
use ndarray_npy::read_npy;
use tch::{Device, Kind, Tensor};
use toe_pipe::formats;

use crate::formats_util::run_python;

/// Three classes in 6-d with different spreads along different axes.
fn labelled_features(ws: &Ws) {
    let _rng = crate::rng_lock();
    tch::manual_seed(21);
    let labels = Tensor::arange(240, (Kind::Int64, Device::Cpu)).remainder(3);
    let centres = Tensor::randn([3, 6], (Kind::Float, Device::Cpu)) * 4.0;
    let scale = Tensor::from_slice(&[3.0f32, 1.0, 0.5, 0.5, 0.2, 1.5]);
    let features = centres.index_select(0, &labels) + Tensor::randn([240, 6], (Kind::Float, Device::Cpu)) * scale;
    save_npy(ws, "data/features.npy", &features);
    save_npy(ws, "data/labels.npy", &labels);
}

const VOS: &str = r#"
[pipeline]
name = "vos"

[[node]]
id = "virtual"
op = "synthesize_outliers"
sources.features = "data/features.npy"
sources.labels = "data/labels.npy"
params = { samples_per_class = 500, keep_per_class = 7, seed = 4 }
outputs.features = { path = "out/virtual.npy" }
outputs.labels = { path = "out/virtual_labels.npy" }
"#;

/// VOS's selection (`vos/classification/CIFAR/train_virtual.py`): per class a
/// `MultivariateNormal(mean, covariance_matrix=cov)`, `rsample((sample_from,))`,
/// `topk(-log_prob, select)`; fitted as VOS fits it, the covariance of the
/// class-centred features over their count plus 1e-4 I. In float64, after
/// `manual_seed(4)`, classes in label order.
const VOS_PYTORCH: &str = r#"
import sys
import numpy as np
import torch
data, out = sys.argv[1], sys.argv[2]
x = torch.from_numpy(np.load(f"{data}/features.npy")).double()
y = torch.from_numpy(np.load(f"{data}/labels.npy")).long()
num_classes, d = int(y.max()) + 1, x.shape[1]
means = torch.stack([x[y == c].mean(0) for c in range(num_classes)])
X = torch.cat([x[y == c] - means[c] for c in range(num_classes)])
cov = X.t() @ X / len(X) + 0.0001 * torch.eye(d, dtype=torch.float64)
torch.manual_seed(4)
kept = []
for c in range(num_classes):
    dist = torch.distributions.multivariate_normal.MultivariateNormal(means[c], covariance_matrix=cov)
    samples = dist.rsample((500,))
    _, index = torch.topk(-dist.log_prob(samples), 7)
    kept.append(samples[index])
np.save(f"{out}/pytorch.npy", torch.cat(kept).float().numpy())
"#;

#[test]
fn synthesized_outliers_match_vos_sampling_in_pytorch() {
    let ws = Ws::new();
    labelled_features(&ws);
    ws.write("pipeline.toml", VOS);
    ws.run("pipeline.toml").ok();
    run_python(VOS_PYTORCH, &[&ws.path("data"), &ws.path("out")]);
    let ours: Array2<f32> = read_npy(ws.path("out/virtual.npy")).unwrap();
    let theirs: Array2<f32> = read_npy(ws.path("out/pytorch.npy")).unwrap();
    assert_eq!(ours.dim(), (21, 6));
    let diff = ours.iter().zip(theirs.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "the kept samples differ from VOS's by {diff}");
    let labels = formats::read_indices(&ws.path("out/virtual_labels.npy")).unwrap();
    assert_eq!(labels, [0; 7].iter().chain(&[1; 7]).chain(&[2; 7]).copied().collect::<Vec<i64>>());
}

/// A pipeline around one op node whose params and inputs the test fills in.
fn one_node(op: &str, body: &str) -> String {
    format!("[pipeline]\nname = \"bad\"\n\n[[node]]\nid = \"n\"\nop = \"{op}\"\n{body}\n")
}

#[test]
fn bad_study_inputs_name_the_node_the_input_and_the_fix() {
    let ws = Ws::new();
    labelled_features(&ws);

    // More kept than drawn.
    let p = one_node(
        "synthesize_outliers",
        "sources.features = \"data/features.npy\"\nsources.labels = \"data/labels.npy\"\nparams = { samples_per_class = 5, keep_per_class = 6 }",
    );
    ws.write("keep.toml", &p);
    let out = ws.toe(&["run", "keep.toml"]).fails();
    assert!(
        out.stderr.contains("node n") && out.stderr.contains("keep_per_class = 6 is more than samples_per_class = 5"),
        "{}",
        out.stderr
    );

    // Class names of the wrong length for the labels.
    formats::write_strings(&ws.path("data/names.npy"), &["zebra", "tench"]).unwrap();
    let p = one_node("class_prompts", "sources.names = \"data/names.npy\"\nsources.labels = \"data/labels.npy\"");
    ws.write("names.toml", &p);
    let out = ws.toe(&["run", "names.toml"]).fails();
    assert!(
        out.stderr.contains("node n")
            && out.stderr.contains("has 2 names but input `labels`")
            && out.stderr.contains("3 classes")
            && out.stderr.contains("one name per class"),
        "{}",
        out.stderr
    );

    // An auxiliary image set with no images.
    std::fs::create_dir_all(ws.path("data/aux/striped")).unwrap();
    crate::write_tiny_clip(&ws.path("data/clip.pt"));
    let p = one_node("embed_images", "sources.model = \"data/clip.pt\"\nsources.images = \"data/aux\"");
    ws.write("aux.toml", &p);
    let out = ws.toe(&["run", "aux.toml"]).fails();
    assert!(out.stderr.contains("node n") && out.stderr.contains("data/aux"), "{}", out.stderr);
    assert!(out.stderr.contains("found no image file") && out.stderr.contains("ImageFolder layout"), "{}", out.stderr);
}
