//! The README's main pipeline, `pipelines/demo.toml`, run for real through
//! the CLI at a reduced size (`--set` on its variables): the world, CLIP
//! pre-training, the decoder, every outlier type, heads over two seeds,
//! evaluation and the printed table. Then a second run does nothing, a new
//! list of scores re-runs only their evaluation and the report, forced
//! re-runs of the model nodes reproduce their outputs (so nothing downstream
//! re-runs), and a changed noise variance re-runs only the exposed heads and
//! what follows. scripts/demo_feature_scores.py runs on the store it leaves.
//! Then the image-vs-text study (`pipelines/demo_study.toml`) on the same
//! store runs only its own nodes, and an edit of one cell's outliers re-runs
//! only that cell.

use crate::common;

use common::Ws;

/// Small enough for CI (a minute or two on two cores), large enough that
/// every op meets real data: the decoder's vocabulary must hold the top-k
/// of `outliers_word`.
const SMALL: [&str; 9] = [
    "corpus_size=2500",
    "decoder_corpus_size=1500",
    "id_count=30",
    "clip_steps=40",
    "clip_width=8",
    "decoder_epochs=1",
    "seeds=0,1",
    "head_epochs=3",
    "world_seed=2",
];

/// `--set` arguments for SMALL.
fn small_sets() -> Vec<&'static str> {
    SMALL.iter().flat_map(|s| ["--set", s]).collect()
}

fn run(ws: &Ws, extra: &[&str]) -> common::Out {
    let mut args = vec!["run", "pipelines/demo.toml"];
    args.extend(small_sets());
    for s in extra {
        args.extend(["--set", s]);
    }
    ws.toe(&args).ok()
}

#[test]
fn the_demo_pipeline_runs_end_to_end_then_only_what_an_edit_makes_stale() {
    let ws = Ws::new();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml");
    ws.write("pipelines/demo.toml", &std::fs::read_to_string(file).unwrap());

    let first = run(&ws, &[]);
    let ran = first.ran();
    for node in [
        "world_corpus",
        "clip",
        "decoder",
        "words",
        "captions",
        "caption_selection",
        "stats",
        "head_caption_1",
        "eval_word_0",
        "report",
    ] {
        assert!(ran.contains(node), "{node} did not run:\n{}", first.all());
    }
    // The table is printed at the end of the run (`show` in the file),
    // with the rows of the scores that need no head.
    for set in ["ood_near", "ood_scenes", "ood_textures", "average"] {
        for variant in ["baseline", "word", "description", "caption"] {
            let row = format!("| {set} | {variant} | energy | 2 |");
            assert!(first.stdout.contains(&row), "no row {row:?} in:\n{}", first.stdout);
        }
        for score in ["MCM", "Mahalanobis", "KNN"] {
            let row = format!("| {set} | no head | {score} | 1 |");
            assert!(first.stdout.contains(&row), "no row {row:?} in:\n{}", first.stdout);
        }
    }
    assert!(ws.path("results/demo/table.md").is_file());
    let page = ws.read("results/demo/report.html");
    for node in ["clip", "decoder", "features_ood_near", "head_caption_1", "eval_no_head"] {
        assert!(page.contains(&format!("<tr id=\"node-{node}\">")), "{node} is not in the page's DAG");
    }
    // Every outlier type produced text to expose the head to.
    let word_log = ws.toe(&["log", "words"]).ok();
    assert!(word_log.stdout.contains("words"), "{}", word_log.stdout);

    // scripts/demo_feature_scores.py reads the store this run left.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let scores = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/demo_feature_scores.py"))
        .arg("--store")
        .arg(ws.store())
        .output()
        .expect("run the venv's python");
    let printed = String::from_utf8_lossy(&scores.stdout);
    assert!(scores.status.success(), "{printed}{}", String::from_utf8_lossy(&scores.stderr));
    assert_eq!(printed.lines().filter(|l| l.matches(" | ").count() == 3).count(), 5, "{printed}");

    let again = run(&ws, &[]);
    assert!(again.ran().is_empty(), "{}", again.all());
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert!(again.stdout.contains("| average | word | energy | 2 |"), "the table is shown again:\n{}", again.stdout);

    // Another list of scores without a head: that evaluation and the report.
    let rescored = run(&ws, &["no_head_scores=mcm,knn"]);
    assert_eq!(rescored.ran(), common::set(["eval_no_head", "report"]), "{}", rescored.all());
    assert!(!rescored.stdout.contains("Mahalanobis"), "{}", rescored.stdout);

    // Re-running the nodes that write models and statistics (forced)
    // reproduces their outputs byte for byte, so nothing downstream re-runs
    // but the report, whose page shows the run's new records (@lineage).
    let forced_nodes = ["clip", "decoder", "stats", "words", "captions", "head_word_0"];
    let forced =
        ws.toe(&[&["run", "pipelines/demo.toml", "--force", &forced_nodes.join(",")][..], &small_sets()].concat()).ok();
    let expected: std::collections::BTreeSet<String> =
        forced_nodes.iter().chain(&["report"]).map(|n| n.to_string()).collect();
    assert_eq!(forced.ran(), expected, "{}", forced.all());

    let edited = run(&ws, &["noise_var=0.03"]);
    let ran = edited.ran();
    assert!(ran.contains("head_word_0") && ran.contains("head_caption_1"), "{}", edited.all());
    for node in &ran {
        let exposed_head = ["head_word_", "head_description_", "head_caption_"].iter().any(|p| node.starts_with(p));
        let downstream = node.starts_with("eval_") && !node.starts_with("eval_baseline_") || node == "report";
        assert!(exposed_head || downstream, "{node} re-ran after a noise change:\n{}", edited.all());
    }

    study(&ws);
}

/// The study's variables at the reduced size: SMALL's that it shares (the
/// decoder's are demo.toml's alone), and a small VOS.
fn study_run(ws: &Ws, extra: &[&str]) -> common::Out {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo_study.toml");
    ws.write("pipelines/demo_study.toml", &std::fs::read_to_string(file).unwrap());
    let mut args = vec!["run", "pipelines/demo_study.toml"];
    for s in SMALL
        .iter()
        .filter(|s| !s.starts_with("decoder_"))
        .chain(["aux_count=40", "vos_samples=300", "vos_keep=8"].iter())
    {
        args.extend(["--set", s]);
    }
    for s in extra {
        args.extend(["--set", s]);
    }
    ws.toe(&args).ok()
}

fn study(ws: &Ws) {
    let first = study_run(ws, &[]);
    let ran = first.ran();
    // The demo's world, CLIP, features and baseline come from the store:
    // demo_study.toml's copies of their definitions have the same keys.
    for shared in [
        "world_corpus",
        "clip",
        "classes",
        "features_id_train",
        "features_ood_near",
        "head_baseline_0",
        "eval_baseline_1",
    ] {
        assert!(!ran.contains(shared), "{shared} ran again in the study:\n{}", first.all());
    }
    let new = [
        "world_aux_backgrounds",
        "features_aux_backgrounds",
        "aux_prompts",
        "text_aux",
        "id_prompts",
        "virtual_text",
        "virtual_image",
    ];
    for node in new.iter().map(|n| n.to_string()).chain(
        ["image_real", "image_virtual", "text_real", "text_virtual"]
            .iter()
            .flat_map(|c| [format!("head_{c}_0"), format!("eval_{c}_1")]),
    ) {
        assert!(ran.contains(&node), "{node} did not run:\n{}", first.all());
    }
    for cell in ["baseline", "image_real", "image_virtual", "text_real", "text_virtual"] {
        let row = format!("| average | {cell} | 2 |");
        assert!(first.stdout.contains(&row), "no row {row:?} in:\n{}", first.stdout);
    }
    assert!(study_run(ws, &[]).ran().is_empty(), "a second study run did something");

    // More auxiliary images: only the real-image cell's outliers change.
    let edited = study_run(ws, &["aux_count=48"]);
    let mut expected: std::collections::BTreeSet<String> =
        ["world_aux_backgrounds", "features_aux_backgrounds", "report"].iter().map(|s| s.to_string()).collect();
    for seed in [0, 1] {
        expected.insert(format!("head_image_real_{seed}"));
        expected.insert(format!("eval_image_real_{seed}"));
    }
    // aux_prompts reads only the set's class names, which did not change
    assert_eq!(edited.ran(), expected, "{}", edited.all());
}
