//! The TOE ops through the CLI on small inputs the test makes: statistics,
//! description outliers, caption selection, heads with and without
//! exposure, evaluation and the report; then an edit re-runs exactly the
//! nodes it makes stale.

use crate::common;

use std::path::Path;

use common::{save_npy, set, Ws};
use tch::{Device, Kind, Tensor};
use toe_pipe::formats;

const PIPELINE: &str = r#"
[pipeline]
name = "toe-ops"

[vars]
noise_var = 0.016
variants = ["baseline", "text"]

[[node]]
id = "stats"
op = "class_stats"
sources.features = "data/train_features.npy"
sources.labels = "data/train_labels.npy"
params.max_count = 60
outputs.means = { path = "out/means.pt" }
outputs.precision = { path = "out/precision.pt" }

[[node]]
id = "descriptions"
op = "outliers_description"
sources.descriptors = "data/descriptors.json"
outputs.sentences = { path = "out/descriptions.npy" }

[[node]]
id = "captions"
op = "mahalanobis_select"
sources.features = "data/caption_features.npy"
sources.strings = "data/captions.npy"
inputs.means = "stats.means"
inputs.precision = "stats.precision"
params.ratio = 0.2
outputs.index = { path = "out/caption_index.npy" }
outputs.selected = { path = "out/captions_selected.npy" }

[[node]]
id = "head_baseline"
op = "train_oe"
sources.features = "data/train_features.npy"
sources.labels = "data/train_labels.npy"
params = { epochs = 4, lr = 0.01 }

[[node]]
id = "head_text"
op = "train_oe"
sources.features = "data/train_features.npy"
sources.labels = "data/train_labels.npy"
sources.outliers = "data/outlier_features.npy"
params = { epochs = 4, lr = 0.01, noise_var = "${noise_var}" }
outputs.head = { path = "out/head_text.pt" }

[[node]]
id = "eval_${v}"
for_each.v = "${variants}"
op = "evaluate"
inputs.head = "head_${v}.head"
sources.id_features = "data/val_features.npy"
sources.id_labels = "data/val_labels.npy"
sources.ood_features = ["data/ood_near.npy", "data/ood_far.npy"]
params = { ood_names = ["near", "far"], variant = "${v}" }
outputs.plots = { path = "out/plots_${v}" }

[[node]]
id = "report"
op = "report"
inputs.results = ["eval_${variants}.results"]
outputs.table = { path = "out/table.md" }
"#;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// Three ID classes around separate centres in 16-d, OoD sets near and far.
fn make_data(ws: &Ws) {
    let _rng = crate::rng_lock();
    tch::manual_seed(0);
    let centres = randn(&[3, 16]) * 3.0;
    let class_data = |n: i64| {
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        (centres.index_select(0, &labels) + randn(&[n, 16]), labels)
    };
    let (train, train_labels) = class_data(300);
    let (val, val_labels) = class_data(90);
    save_npy(ws, "data/train_features.npy", &train);
    save_npy(ws, "data/train_labels.npy", &train_labels);
    save_npy(ws, "data/val_features.npy", &val);
    save_npy(ws, "data/val_labels.npy", &val_labels);
    save_npy(ws, "data/ood_near.npy", &(centres.mean_dim(0, true, Kind::Float) + randn(&[60, 16])));
    save_npy(ws, "data/ood_far.npy", &(randn(&[60, 16]) * 4.0 + 8.0));
    save_npy(ws, "data/outlier_features.npy", &randn(&[40, 16]));
    save_npy(ws, "data/caption_features.npy", &randn(&[50, 16]));
    let captions: Vec<String> = (0..50).map(|i| format!("caption number {}", i % 45)).collect();
    let p = ws.path("data/captions.npy");
    formats::write_strings(&p, &captions).unwrap();
    ws.write(
        "data/descriptors.json",
        r#"{"zebra": ["black and white stripes", "a horse-like body"], "apple": ["a round fruit"]}"#,
    );
    ws.write("pipeline.toml", PIPELINE);
}

#[test]
fn toe_ops_run_then_an_edit_reruns_exactly_its_dependants() {
    let ws = Ws::new();
    make_data(&ws);
    let first = ws.run("pipeline.toml");
    let all = set([
        "stats",
        "descriptions",
        "captions",
        "head_baseline",
        "head_text",
        "eval_baseline",
        "eval_text",
        "report",
    ]);
    assert_eq!(first.ran(), all, "{}", first.all());

    // Statistics: unit-norm means [3, 16], a symmetric precision [16, 16].
    let means = formats::load_tensor_pt(&ws.path("out/means.pt")).unwrap();
    assert_eq!(means.size(), [3, 16]);
    let norms = means.norm_scalaropt_dim(2, [1i64].as_slice(), false);
    assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
    let precision = formats::load_tensor_pt(&ws.path("out/precision.pt")).unwrap();
    assert!(
        (&precision - precision.transpose(0, 1)).abs().max().double_value(&[])
            < 1e-3 * precision.abs().max().double_value(&[])
    );

    // Descriptions: 3 phrases, 5 sentences each, in file order.
    let sentences = formats::read_strings(&ws.path("out/descriptions.npy")).unwrap();
    assert_eq!(sentences.len(), 15);
    assert_eq!(sentences[0], "This is a photo of black and white stripes");
    assert_eq!(sentences[2], "This is a photo of a round fruit");

    // Caption selection: int(50 * 0.2) indices, unique strings among them.
    let index = formats::read_indices(&ws.path("out/caption_index.npy")).unwrap();
    assert_eq!(index.len(), 10);
    let selected = formats::read_strings(&ws.path("out/captions_selected.npy")).unwrap();
    assert!(!selected.is_empty() && selected.len() <= 10);

    // The head loads as nn.Linear(16, 3); the report compares both variants.
    let head = formats::load_state_dict(&ws.path("out/head_text.pt")).unwrap();
    let shapes: Vec<(String, Vec<i64>)> = head.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    assert_eq!(shapes, [("weight".to_string(), vec![3, 16]), ("bias".to_string(), vec![3])]);
    let table = ws.read("out/table.md");
    for needle in ["| near | baseline |", "| far | text |", "| average | text |"] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    assert!(Path::new(&ws.path("out/plots_text/far.svg")).is_file());

    // Nothing to do the second time.
    assert!(ws.run("pipeline.toml").ran().is_empty());

    // A new noise variance: only the exposed head, its evaluation and the report.
    let edited = ws.toe(&["run", "pipeline.toml", "--set", "noise_var=0.05"]).ok();
    assert_eq!(edited.ran(), set(["head_text", "eval_text", "report"]), "{}", edited.all());
}

#[test]
fn description_outliers_reproduce_the_original_file() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/toe");
    if !reference.is_dir() {
        eprintln!("SKIPPED: {} is absent (reference data of the original release)", reference.display());
        return;
    }
    let ws = Ws::new();
    ws.write(
        "pipeline.toml",
        &format!(
            r#"
[pipeline]
name = "descriptions"
[[node]]
id = "descriptions"
op = "outliers_description"
sources.descriptors = "{}"
params.templates = false
outputs.sentences = {{ path = "out/description.npy" }}
"#,
            reference.join("descriptors_imagenet.json").display()
        ),
    );
    ws.run("pipeline.toml");
    let ours = formats::read_strings(&ws.path("out/description.npy")).unwrap();
    let original = formats::read_strings(&reference.join("ImageNet_outlier_description.npy")).unwrap();
    assert_eq!(ours.len(), 5800);
    assert_eq!(ours, original);
}

/// Values outside a built-in op's declared range or allowed values are
/// `toe-pipe check` errors, with the place, the node, the param and what is
/// allowed, before anything runs (the catalog comes from the worker).
#[test]
fn out_of_range_and_unknown_enum_params_fail_check() {
    let ws = Ws::new();
    let text = r#"
[[node]]
id = "embed"
op = "embed_text"
sources.model = "clip.pt"
sources.strings = "strings.npy"
params.batch_size = 0
params.precision = "fp8"

[[node]]
id = "stats"
op = "class_stats"
sources.features = "f.npy"
sources.labels = "l.npy"
params = { max_count = -3 }
"#;
    ws.write("p.toml", text);
    let out = ws.toe(&["check", "p.toml"]).fails();
    let err = out.stderr;
    assert!(err.contains("p.toml:7:21: error in node `embed`: param `batch_size` of op `embed_text` = 0 is out of range (allowed: 1 or more)"), "{err}");
    assert!(err.contains("fix: write a value in the allowed range (1 or more)"), "{err}");
    assert!(err.contains("p.toml:8:20: error in node `embed`: param `precision` of op `embed_text` = \"fp8\" is not allowed (allowed: one of \"fp32\", \"fp16\", \"bf16\")"), "{err}");
    assert!(err.contains("p.toml:15:24: error in node `stats`: param `max_count` of op `class_stats` = -3 is out of range (allowed: 1 or more)"), "{err}");
    // run refuses the same way, before touching anything.
    let out = ws.toe(&["run", "p.toml"]).fails();
    assert!(out.stderr.contains("param `batch_size` of op `embed_text` = 0 is out of range"), "{}", out.stderr);
    assert!(!ws.path("artifacts/objects").exists());

    let ops = ws.toe(&["ops"]).ok();
    assert!(
        ops.stdout.contains("param  batch_size: integer = 256 [1 or more]  strings per forward pass"),
        "{}",
        ops.stdout
    );
    assert!(
        ops.stdout.contains("param  precision: string = \"fp32\" [one of \"fp32\", \"fp16\", \"bf16\"]"),
        "{}",
        ops.stdout
    );
}

/// Every score of `evaluate` through the CLI: the head's three on a trained
/// head, the zero-shot and feature-space ones without a head; each gets its
/// rows in the results, the plots and the report. Changing a score list
/// re-runs that evaluation and the report only.
const SCORES: &str = r#"
[pipeline]
name = "scores"

[vars]
head_scores = ["energy", "msp", "maxlogit"]

[[node]]
id = "stats"
op = "class_stats"
sources.features = "data/train_features.npy"
sources.labels = "data/train_labels.npy"
params.max_count = 60

[[node]]
id = "head"
op = "train_oe"
sources.features = "data/train_features.npy"
sources.labels = "data/train_labels.npy"
params = { epochs = 4, lr = 0.01 }

[[node]]
id = "eval_head"
op = "evaluate"
inputs.head = "head.head"
sources.id_features = "data/val_features.npy"
sources.id_labels = "data/val_labels.npy"
sources.ood_features = ["data/ood_near.npy", "data/ood_far.npy"]
params = { ood_names = ["near", "far"], variant = "baseline", scores = "${head_scores}" }
outputs.plots = { path = "out/plots_head" }

[[node]]
id = "eval_features"
op = "evaluate"
sources.id_features = "data/val_features.npy"
sources.id_labels = "data/val_labels.npy"
sources.ood_features = ["data/ood_near.npy", "data/ood_far.npy"]
sources.class_text = "data/class_text.npy"
sources.word_text = "data/word_text.npy"
inputs.class_means = "stats.means"
inputs.precision = "stats.precision"
sources.train_features = "data/train_features.npy"
params = { ood_names = ["near", "far"], variant = "no head", scores = ["mcm", "neglabel", "mahalanobis", "knn"], neglabel_count = 20, neglabel_groups = 2, knn_k = 5 }
outputs.results = { path = "out/features.json" }
outputs.plots = { path = "out/plots_features" }

[[node]]
id = "report"
op = "report"
inputs.results = ["eval_head.results", "eval_features.results"]
inputs.plots = ["eval_head.plots", "eval_features.plots"]
inputs.lineage = "@lineage"
outputs.table = { path = "out/table.md" }
outputs.summary = { path = "out/summary.json" }
outputs.page = { path = "out/report.html" }
"#;

#[test]
fn every_score_gets_its_rows_and_a_score_list_edit_reruns_only_evaluations() {
    let ws = Ws::new();
    make_data(&ws);
    {
        let _rng = crate::rng_lock();
        tch::manual_seed(3);
        // Class prompts near the class centres would be too easy; random
        // text features still exercise every path.
        save_npy(&ws, "data/class_text.npy", &randn(&[3, 16]));
        save_npy(&ws, "data/word_text.npy", &randn(&[40, 16]));
    }
    ws.write("scores.toml", SCORES);
    let first = ws.run("scores.toml");
    assert_eq!(first.ran(), set(["stats", "head", "eval_head", "eval_features", "report"]), "{}", first.all());

    let table = ws.read("out/table.md");
    for score in ["energy", "MSP", "MaxLogit"] {
        for set in ["near", "far", "average"] {
            let row = format!("| {set} | baseline | {score} | 1 |");
            assert!(table.contains(&row), "{row} missing from\n{table}");
        }
    }
    for score in ["MCM", "NegLabel", "Mahalanobis", "KNN"] {
        let row = format!("| average | no head | {score} | 1 |");
        assert!(table.contains(&row), "{row} missing from\n{table}");
    }
    // Without a head the ID accuracy is CLIP's zero-shot one (class_text).
    let results: serde_json::Value = serde_json::from_str(&ws.read("out/features.json")).unwrap();
    assert_eq!(results["score"], "mcm");
    assert!(results["id_accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{results}");
    let more: Vec<&str> =
        results["more_scores"].as_array().unwrap().iter().map(|s| s["score"].as_str().unwrap()).collect();
    assert_eq!(more, ["neglabel", "mahalanobis", "knn"]);
    for plot in ["out/plots_head/far.svg", "out/plots_head/far.msp.svg", "out/plots_features/near.knn.svg"] {
        assert!(ws.path(plot).is_file(), "{plot} missing");
    }
    let log = ws.toe(&["log", "eval_features"]).ok();
    assert!(log.stdout.contains("NegLabel: 20 of 40 words mined as negative labels"), "{}", log.stdout);

    // The page: every number of the table, each group's evaluation linked
    // to its row in the run's DAG, the plots inline, every upstream node
    // with its action's hashes.
    let page = ws.read("out/report.html");
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for line in table.lines().filter(|l| l.starts_with("| near") || l.starts_with("| average")) {
        for cell in line.split('|').map(str::trim).skip(4).filter(|c| !c.is_empty()) {
            assert!(page.contains(&format!(">{cell}<")), "{cell} (from {line:?}) is not in the page");
        }
    }
    for node in ["stats", "head", "eval_head", "eval_features"] {
        assert!(page.contains(&format!("<tr id=\"node-{node}\">")), "no row for {node}");
        assert!(page.contains(&format!("<a href=\"#node-{node}\">")), "no link to {node}");
    }
    let results_hash = toe_pipe::store::Hash::of_bytes(ws.read("out/features.json").as_bytes());
    assert!(page.contains(&format!("id=\"artifact-{}\"", results_hash.hex())), "the results' hash is not in the page");
    assert!(page.contains("source data/train_features.npy"));
    // 3 + 4 scores, 2 OoD sets, one plot each; nothing loaded from elsewhere.
    assert_eq!(page.matches("src=\"data:image/svg+xml;base64,").count(), 14);
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"));

    // Another score list: that evaluation and the report, not the head.
    let edited = ws.toe(&["run", "scores.toml", "--set", "head_scores=energy,msp"]).ok();
    assert_eq!(edited.ran(), set(["eval_head", "report"]), "{}", edited.all());
    assert!(!ws.read("out/table.md").contains("MaxLogit"));
}

/// A score whose input is not connected fails `toe-pipe check`, naming the
/// node, the score and the input, before anything runs.
#[test]
fn a_score_without_its_input_fails_check() {
    let ws = Ws::new();
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "eval"
op = "evaluate"
sources.id_features = "f.npy"
sources.id_labels = "l.npy"
sources.ood_features = ["o.npy"]
params = { ood_names = ["o"], scores = ["mcm", "neglabel", "knn"] }

[[node]]
id = "eval_energy"
op = "evaluate"
sources.id_features = "f.npy"
sources.id_labels = "l.npy"
sources.ood_features = ["o.npy"]
params.ood_names = ["o"]
"#,
    );
    let err = ws.toe(&["check", "p.toml", "--no-sources"]).fails().stderr;
    for (node, score, input) in [
        ("eval", "mcm", "class_text"),
        ("eval", "neglabel", "class_text"),
        ("eval", "neglabel", "word_text"),
        ("eval", "knn", "train_features"),
        ("eval_energy", "energy", "head"),
    ] {
        let needle = format!(
            "error in node `{node}`: op `evaluate`: param `scores` has \"{score}\", which needs input `{input}`"
        );
        assert!(err.contains(&needle), "{needle} missing from\n{err}");
    }
    assert!(err.contains("fix: add inputs.train_features = \"node.output\" (or sources.train_features = \"path\"), or take \"knn\" out of params.scores"), "{err}");
    let ops = ws.toe(&["ops"]).ok().stdout;
    assert!(ops.contains("in     class_text: npy (optional) (needed by scores \"mcm\", \"neglabel\")"), "{ops}");
    assert!(ops.contains("param  scores: array of strings = [\"energy\"]"), "{ops}");
}
