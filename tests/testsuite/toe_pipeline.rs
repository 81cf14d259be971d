//! A whole TOE pipeline through the CLI on a tiny synthetic dataset (the demo
//! world's generator) with a tiny random CLIP the test builds: images to
//! features, class statistics, description and caption outliers (with the
//! Mahalanobis filter), heads with and without exposure, evaluation on every
//! OoD set, one report. Then one op's params change and exactly the
//! expected nodes re-run.

use crate::common;

use crate::write_tiny_clip;
use common::{set, Ws};
use toe_pipe::formats;

const PIPELINE: &str = r#"
[pipeline]
name = "tiny-toe"

[vars]
ood_sets = ["ood_near", "ood_textures"]
variants = ["baseline", "description", "caption"]
desc_noise = 0.016

[[node]]
id = "world_${set}"
for_each.set = ["id_train", "id_val", "ood_near", "ood_textures"]
op = "world_generate"
params = { seed = 3, image_size = 32, id_classes = ["circle", "star", "square"], set = "${set}", count = 12 }

[[node]]
id = "classes"
op = "world_classes"
params = { image_size = 32, id_classes = ["circle", "star", "square"] }

[[node]]
id = "features_${set}"
for_each.set = ["id_train", "id_val", "ood_near", "ood_textures"]
op = "embed_images"
sources.model = "models/clip.pt"
inputs.images = "world_${set}.images"
params.batch_size = 16

[[node]]
id = "stats"
op = "class_stats"
inputs.features = "features_id_train.features"
inputs.labels = "features_id_train.labels"
params.max_count = 12

[[node]]
id = "descriptions"
op = "outliers_description"
inputs.descriptors = "classes.descriptors"

[[node]]
id = "caption_features"
op = "embed_text"
sources.model = "models/clip.pt"
sources.strings = "data/captions.npy"

[[node]]
id = "captions"
op = "mahalanobis_select"
inputs.features = "caption_features.features"
sources.strings = "data/captions.npy"
inputs.means = "stats.means"
inputs.precision = "stats.precision"
params.ratio = 0.5

[[node]]
id = "text_description"
op = "embed_text"
sources.model = "models/clip.pt"
inputs.strings = "descriptions.sentences"

[[node]]
id = "text_caption"
op = "embed_text"
sources.model = "models/clip.pt"
inputs.strings = "captions.selected"

[[node]]
id = "head_baseline"
op = "train_oe"
inputs.features = "features_id_train.features"
inputs.labels = "features_id_train.labels"
params = { epochs = 3, lr = 0.01 }

[[node]]
id = "head_description"
op = "train_oe"
inputs.features = "features_id_train.features"
inputs.labels = "features_id_train.labels"
inputs.outliers = "text_description.features"
params = { epochs = 3, lr = 0.01, noise_var = "${desc_noise}" }

[[node]]
id = "head_caption"
op = "train_oe"
inputs.features = "features_id_train.features"
inputs.labels = "features_id_train.labels"
inputs.outliers = "text_caption.features"
params = { epochs = 3, lr = 0.01 }

[[node]]
id = "eval_${v}"
for_each.v = "${variants}"
op = "evaluate"
inputs.head = "head_${v}.head"
inputs.id_features = "features_id_val.features"
inputs.id_labels = "features_id_val.labels"
inputs.ood_features = ["features_${ood_sets}.features"]
params = { ood_names = "${ood_sets}", variant = "${v}" }

[[node]]
id = "report"
op = "report"
inputs.results = ["eval_${variants}.results"]
outputs.table = { path = "results/table.md" }
"#;

#[test]
fn whole_toe_pipeline_then_one_edit() {
    let ws = Ws::new();
    write_tiny_clip(&ws.path("models/clip.pt"));
    let captions: Vec<String> =
        (0..20).map(|i| format!("a photo of a {} shape number {i}", ["red", "blue", "green"][i % 3])).collect();
    std::fs::create_dir_all(ws.path("data")).unwrap();
    formats::write_strings(&ws.path("data/captions.npy"), &captions).unwrap();
    ws.write("pipeline.toml", PIPELINE);

    let first = ws.run("pipeline.toml");
    assert_eq!(first.ran().len(), 22, "{}", first.all());
    let table = ws.read("results/table.md");
    for needle in ["| ood_near | baseline |", "| ood_textures | description |", "| average | caption |"] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    assert!(ws.run("pipeline.toml").ran().is_empty());

    let edited = ws.toe(&["run", "pipeline.toml", "--set", "desc_noise=0.03"]).ok();
    // The head and its evaluation re-run; the report too unless the new
    // metrics are byte-identical (early cutoff: tiny sets often give equal
    // metrics). Nothing else runs.
    let ran = edited.ran();
    assert!(ran.contains("head_description") && ran.contains("eval_description"), "{}", edited.all());
    assert!(ran.is_subset(&set(["head_description", "eval_description", "report"])), "{}", edited.all());
}

/// An unreadable image stops `embed_images` with the file, the node and the
/// param that leaves such files out; with that param the node runs and
/// lists the file it skipped.
#[test]
fn an_unreadable_image_names_the_file_and_the_skip_param() {
    let ws = Ws::new();
    write_tiny_clip(&ws.path("models/clip.pt"));
    for class in ["a", "b"] {
        std::fs::create_dir_all(ws.path(&format!("data/images/{class}"))).unwrap();
        image::RgbImage::from_pixel(32, 32, image::Rgb([200, 30, 30]))
            .save(ws.path(&format!("data/images/{class}/ok.png")))
            .unwrap();
    }
    let png = std::fs::read(ws.path("data/images/a/ok.png")).unwrap();
    std::fs::write(ws.path("data/images/a/broken.png"), &png[..png.len() / 2]).unwrap();
    let pipeline = |skip: bool| {
        format!(
            "[[node]]\nid = \"features\"\nop = \"embed_images\"\nsources.model = \"models/clip.pt\"\nsources.images = \"data/images\"\nparams.skip_unreadable = {skip}\noutputs.classes = {{ path = \"out/classes.json\" }}\n"
        )
    };
    ws.write("p.toml", &pipeline(false));
    let failed = ws.toe(&["run", "p.toml"]).fails();
    for needle in ["broken.png", "node features", "params.skip_unreadable = true"] {
        assert!(failed.all().contains(needle), "no {needle:?} in:\n{}", failed.all());
    }
    ws.write("p.toml", &pipeline(true));
    ws.run("p.toml");
    let classes = ws.read("out/classes.json");
    assert!(classes.contains("broken.png"), "{classes}");
}
