//! The switches that reproduce the original release, through the CLI,
//! against the original's own Python written out on the same inputs:
//! `train_oe`'s zip epoch (the default) against the original training loop
//! in PyTorch, weight for weight; the original class-mean indexing of
//! `class_stats`; the `str.strip` template filling of
//! `outliers_description`.

use crate::common;

use std::path::Path;

use common::{save_npy, Ws};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use tch::{Device, Kind, Tensor};
use toe_pipe::formats;

use crate::formats_util::run_python;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn npy2(path: &Path) -> Tensor {
    let a: Array2<f32> = read_npy(path).unwrap();
    let (r, c) = a.dim();
    // iter() walks in logical order whatever the file's (Fortran) layout
    Tensor::from_slice(&a.iter().copied().collect::<Vec<f32>>()).view([r as i64, c as i64])
}

fn npy1(path: &Path) -> Tensor {
    let a: Array1<f32> = read_npy(path).unwrap();
    Tensor::from_slice(a.as_slice().unwrap())
}

const HEADS: &str = r#"
[pipeline]
name = "faithful-heads"

[[node]]
id = "head_zip"
op = "train_oe"
sources.features = "data/features.npy"
sources.labels = "data/labels.npy"
sources.outliers = "data/outliers.npy"
params = { epochs = 3, seed = 7 }
outputs.head = { path = "out/head_zip.pt" }
outputs.log = { path = "out/log_zip.json" }

[[node]]
id = "head_cycle"
op = "train_oe"
sources.features = "data/features.npy"
sources.labels = "data/labels.npy"
sources.outliers = "data/outliers.npy"
params = { epochs = 3, seed = 7, zip_epoch = false }
outputs.head = { path = "out/head_cycle.pt" }
outputs.log = { path = "out/log_cycle.json" }

[[node]]
id = "head_baseline"
op = "train_oe"
sources.features = "data/features.npy"
sources.labels = "data/labels.npy"
params = { epochs = 3, seed = 7 }
outputs.head = { path = "out/head_baseline.pt" }
"#;

/// The original's training loop (`trainer.train_one_epoch_text_oe` and
/// `train_one_epoch`, `noise_injection`, Adam 1e-3, batches of 32 + 32),
/// with the features already encoded and the batches drawn as `train_oe`
/// draws them: after `manual_seed(seed)` the head's start as one uniform
/// [C, D + 1] matrix, then each epoch `randperm` of the ID set and, when
/// there are outliers, of the outliers. Everything else is autograd and
/// `torch.optim.Adam`, as in the original.
const ORIGINAL_LOOP: &str = r#"
import json, math, sys
import numpy as np
import torch
import torch.nn.functional as F

data, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
feats = torch.from_numpy(np.load(f"{data}/features.npy"))
labels = torch.from_numpy(np.load(f"{data}/labels.npy")).long()
outliers = torch.from_numpy(np.load(f"{data}/outliers.npy")) if mode != "baseline" else None
seed, epochs, batch, oe_batch = 7, 3, 32, 32
n, d = feats.shape
c = int(labels.max()) + 1

model = torch.nn.Linear(d, c)  # before seeding: its own initialisation draws
torch.manual_seed(seed)
start = torch.empty(c, d + 1).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d))
with torch.no_grad():
    model.weight.copy_(start[:, :d])
    model.bias.copy_(start[:, d])
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

def noise_injection(x, variance=0.016):
    std = math.sqrt(variance)
    x = F.normalize(x, dim=1)
    x = x + torch.randn(x.shape) * std
    return F.normalize(x, dim=1)

steps = []
for epoch in range(epochs):
    id_batches = torch.randperm(n).split(batch)
    if outliers is None:
        pairs = [(b, None) for b in id_batches]        # train_one_epoch: one pass
    elif mode == "zip":
        pairs = zip(id_batches, torch.randperm(len(outliers)).split(oe_batch))
    else:
        raise SystemExit("unknown mode " + mode)
    count = 0
    for b, ob in pairs:
        data_h = feats[b]
        if ob is None:
            output = model(data_h)
            loss = F.cross_entropy(output, labels[b])
        else:
            out_h = noise_injection(outliers[ob])
            output = model(torch.cat((data_h, out_h), 0))
            loss = F.cross_entropy(output[:len(b)], labels[b])
            loss += 0.5 * -(output[len(b):].mean(1) - torch.logsumexp(output[len(b):], dim=1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        count += 1
    steps.append(count)

np.save(f"{out}/weight_{mode}.npy", model.weight.detach().numpy())
np.save(f"{out}/bias_{mode}.npy", model.bias.detach().numpy())
print(json.dumps(steps))
"#;

#[test]
fn train_oe_zip_epoch_matches_the_original_loop_weight_for_weight() {
    let ws = Ws::new();
    {
        let _rng = crate::rng_lock();
        tch::manual_seed(11);
        // 150 ID rows (5 batches, the last of 22) and 70 outliers (3
        // batches, the last of 6): a zip epoch is 3 steps and ends with a
        // partial outlier batch.
        let labels = Tensor::randint(4, [150], (Kind::Int64, Device::Cpu));
        let centres = Tensor::randn([4, 16], (Kind::Float, Device::Cpu)) * 2.0;
        let features = centres.index_select(0, &labels) + Tensor::randn([150, 16], (Kind::Float, Device::Cpu));
        save_npy(&ws, "data/features.npy", &features);
        save_npy(&ws, "data/labels.npy", &labels);
        save_npy(&ws, "data/outliers.npy", &(Tensor::randn([70, 16], (Kind::Float, Device::Cpu)) * 3.0));
    }
    ws.write("pipeline.toml", HEADS);
    ws.run("pipeline.toml").ok();

    let out = ws.path("out");
    for mode in ["zip", "baseline"] {
        let steps = run_python(ORIGINAL_LOOP, &[&ws.path("data"), &out, Path::new(mode)]);
        let expected_steps = if mode == "zip" { "[3, 3, 3]" } else { "[5, 5, 5]" };
        assert_eq!(steps.trim(), expected_steps, "{mode}: the original loop's steps per epoch");
        let head = formats::load_state_dict(&ws.path(&format!("out/head_{mode}.pt"))).unwrap();
        let (weight, bias) = (&head[0].1, &head[1].1);
        let dw = max_abs_diff(weight, &npy2(&out.join(format!("weight_{mode}.npy"))));
        let db = max_abs_diff(bias, &npy1(&out.join(format!("bias_{mode}.npy"))));
        assert!(dw < 1e-5 && db < 1e-5, "{mode}: train_oe and the original loop differ by {dw} (weight), {db} (bias)");
    }
    // The log says how long the zip epochs were.
    let log: serde_json::Value = serde_json::from_str(&ws.read("out/log_zip.json")).unwrap();
    let steps: Vec<u64> = log["epochs"].as_array().unwrap().iter().map(|e| e["steps"].as_u64().unwrap()).collect();
    assert_eq!(steps, [3, 3, 3]);
    // Cycling the outliers is another method: a full ID pass per epoch and
    // a different head.
    let log: serde_json::Value = serde_json::from_str(&ws.read("out/log_cycle.json")).unwrap();
    assert_eq!(log["epochs"][0]["steps"].as_u64(), Some(5));
    let zip = formats::load_state_dict(&ws.path("out/head_zip.pt")).unwrap();
    let cycle = formats::load_state_dict(&ws.path("out/head_cycle.pt")).unwrap();
    assert!(max_abs_diff(&zip[0].1, &cycle[0].1) > 1e-3, "zip and cycle epochs trained the same head");
}

const STATS: &str = r#"
[pipeline]
name = "faithful-stats"

[[node]]
id = "stats"
op = "class_stats"
sources.features = "data/features.npy"
sources.labels = "data/labels.npy"
params = { original_indexing = true, loader_seed = 3 }
outputs.means = { path = "out/means.pt" }
outputs.precision = { path = "out/precision.pt" }

[[node]]
id = "descriptions"
op = "outliers_description"
sources.descriptors = "data/descriptors.json"
params.original_strip = true
outputs.sentences = { path = "out/descriptions.npy" }
"#;

/// The original's `get_mean_prec` over a loader of batch 32 whose shuffled
/// order is `manual_seed(3); randperm(N)`, and its description templates.
const ORIGINAL_STATS: &str = r#"
import json, sys
from collections import defaultdict
import numpy as np
import torch

data, out = sys.argv[1], sys.argv[2]
feats = torch.from_numpy(np.load(f"{data}/features.npy"))
labels = torch.from_numpy(np.load(f"{data}/labels.npy")).long()
torch.manual_seed(3)
order = torch.randperm(len(feats))
n_cls = 100
classwise_mean = torch.empty(min(n_cls, int(labels.max()) + 1), feats.shape[1])
all_features, classwise_idx = [], defaultdict(list)
for idx, rows in enumerate(order.split(32)):
    features = feats[rows].float()
    features /= features.norm(dim=-1, keepdim=True)
    for label in labels[rows]:
        classwise_idx[label.item()].append(idx)
    all_features.append(features)
all_features = torch.cat(all_features)
for cls in range(len(classwise_mean)):
    classwise_mean[cls] = torch.mean(all_features[classwise_idx[cls]].float(), dim=0)
    classwise_mean[cls] /= classwise_mean[cls].norm(dim=-1, keepdim=True)
cov = torch.cov(all_features.T.double())
precision = torch.linalg.inv(cov).float()
np.save(f"{out}/means.npy", classwise_mean.numpy())
np.save(f"{out}/precision.npy", precision.numpy())

templates = ["This is a blurry photo of {}", "This is a photo of many {}",
             "This is a photo of the large {}", "This is a photo of the small {}"]
phrases = [p for ps in json.load(open(f"{data}/descriptors.json")).values() for p in ps]
desc_text_ood_inputs = np.array(["This is a photo of " + p for p in phrases], dtype=object)
for input in desc_text_ood_inputs:
    input = input.strip('a photo of ')
    for template in templates:
        desc_text_ood_inputs = np.append(desc_text_ood_inputs, template.format(input))
print(json.dumps(list(desc_text_ood_inputs)))
"#;

#[test]
fn class_stats_and_descriptions_reproduce_the_original_when_asked() {
    let ws = Ws::new();
    {
        let _rng = crate::rng_lock();
        tch::manual_seed(12);
        // 130 rows in 3 classes of 12-d: the last batch is partial.
        let labels = Tensor::randint(3, [130], (Kind::Int64, Device::Cpu));
        let centres = Tensor::randn([3, 12], (Kind::Float, Device::Cpu)) * 3.0;
        let features = centres.index_select(0, &labels) + Tensor::randn([130, 12], (Kind::Float, Device::Cpu));
        save_npy(&ws, "data/features.npy", &features);
        save_npy(&ws, "data/labels.npy", &labels);
    }
    ws.write(
        "data/descriptors.json",
        r#"{"tench": ["a freshwater fish", "a photo of a fin"], "zebra": ["black and white stripes"]}"#,
    );
    ws.write("pipeline.toml", STATS);
    ws.run("pipeline.toml").ok();
    let printed = run_python(ORIGINAL_STATS, &[&ws.path("data"), &ws.path("out")]);

    let means = formats::load_tensor_pt(&ws.path("out/means.pt")).unwrap();
    let precision = formats::load_tensor_pt(&ws.path("out/precision.pt")).unwrap();
    let dm = max_abs_diff(&means, &npy2(&ws.path("out/means.npy")));
    let dp = max_abs_diff(&precision, &npy2(&ws.path("out/precision.npy")));
    let scale = precision.abs().max().double_value(&[]);
    assert!(dm < 1e-5, "class means differ from the original's by {dm}");
    assert!(dp < 1e-4 * scale, "precision differs from the original's by {dp} (largest entry {scale})");
    // The quirk is real: the batch-number means are nearly one vector, not
    // the class centres (their pairwise cosines are all close to 1).
    let cos = means.matmul(&means.tr());
    assert!(cos.min().double_value(&[]) > 0.9, "batch-number means should be nearly parallel: {cos:?}");

    let ours = formats::read_strings(&ws.path("out/descriptions.npy")).unwrap();
    let original: Vec<String> = serde_json::from_str(&printed).unwrap();
    assert_eq!(ours, original);
    assert!(ours.contains(&"This is a blurry photo of This is a photo of a freshwater fis".to_string()));
}
