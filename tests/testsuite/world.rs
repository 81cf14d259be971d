//! The demo world's generator: determinism, layouts and labels.

use std::path::Path;

use toe_pipe::world::{descriptors_json, id_class_names, write_set, WorldConfig, WorldSet};

fn config(seed: u64) -> WorldConfig {
    let classes: Vec<String> = ["star", "circle", "heart", "cross"].iter().map(|s| s.to_string()).collect();
    WorldConfig::new(seed, 32, &classes).unwrap()
}

/// Every file under `dir` as (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_images() {
    let tmp = tempfile::tempdir().unwrap();
    for set in WorldSet::ALL {
        let a = tmp.path().join(format!("a_{}", set.name()));
        let b = tmp.path().join(format!("b_{}", set.name()));
        let c = tmp.path().join(format!("c_{}", set.name()));
        write_set(&config(1), set, 6, &a).unwrap();
        write_set(&config(1), set, 6, &b).unwrap();
        write_set(&config(2), set, 6, &c).unwrap();
        let (fa, fb, fc) = (files(&a), files(&b), files(&c));
        assert_eq!(fa, fb, "set {} is not deterministic", set.name());
        assert_ne!(fa, fc, "set {} ignores the seed", set.name());
    }
}

#[test]
fn growing_a_set_keeps_its_images() {
    let tmp = tempfile::tempdir().unwrap();
    write_set(&config(5), WorldSet::IdTrain, 3, &tmp.path().join("small")).unwrap();
    write_set(&config(5), WorldSet::IdTrain, 5, &tmp.path().join("big")).unwrap();
    let small = files(&tmp.path().join("small"));
    let big = files(&tmp.path().join("big"));
    for f in &small {
        assert!(big.contains(f), "{} changed when the set grew", f.0);
    }
}

#[test]
fn id_sets_are_image_folders_with_sorted_class_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(3);
    assert_eq!(id_class_names(&cfg), ["circle", "cross", "heart", "star"]);
    let summary = write_set(&cfg, WorldSet::IdVal, 4, tmp.path()).unwrap();
    assert_eq!(summary.images, 16);
    let mut folders: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    folders.sort();
    assert_eq!(folders, id_class_names(&cfg));
    let img = image::open(tmp.path().join("star/000003.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (32, 32));
}

#[test]
fn near_ood_holds_only_shapes_that_are_not_id() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(3);
    let summary = write_set(&cfg, WorldSet::OodNear, 16, tmp.path()).unwrap();
    assert_eq!(summary.folders.len(), 8);
    for f in &summary.folders {
        assert!(!id_class_names(&cfg).contains(f), "{f} is an ID class");
    }
}

/// The auxiliary outlier set (the study's DTD) shares no class with any
/// test set.
#[test]
fn the_auxiliary_set_is_disjoint_from_every_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(3);
    let aux = write_set(&cfg, WorldSet::AuxBackgrounds, 8, &tmp.path().join("aux")).unwrap();
    assert_eq!(aux.folders, ["striped", "dotted", "checkered", "gradient"]);
    assert_eq!(aux.images, 8);
    for set in [WorldSet::IdVal, WorldSet::OodNear, WorldSet::OodScenes, WorldSet::OodTextures] {
        let other = write_set(&cfg, set, 4, &tmp.path().join(set.name())).unwrap();
        for f in &aux.folders {
            assert!(!other.folders.contains(f), "{f} is also a class of {}", set.name());
        }
    }
}

#[test]
fn corpus_has_coco_captions_that_name_a_shape() {
    let tmp = tempfile::tempdir().unwrap();
    write_set(&config(4), WorldSet::Corpus, 50, tmp.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("captions.json")).unwrap()).unwrap();
    let images = json["images"].as_array().unwrap();
    let annotations = json["annotations"].as_array().unwrap();
    assert_eq!(images.len(), 50);
    assert_eq!(annotations.len(), 50);
    for (img, ann) in images.iter().zip(annotations) {
        assert_eq!(img["id"], ann["image_id"]);
        assert!(tmp.path().join("images").join(img["file_name"].as_str().unwrap()).is_file());
        let caption = ann["caption"].as_str().unwrap();
        let names_a_shape = toe_pipe::world::ALL_SHAPES.iter().any(|s| caption.split(' ').any(|w| w == s.name()));
        assert!(names_a_shape, "{caption}");
    }
}

/// Captions of a corpus drawn with `object_free_share`.
fn corpus_captions(cfg: &WorldConfig, count: usize, dir: &Path) -> Vec<String> {
    write_set(cfg, WorldSet::Corpus, count, dir).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("captions.json")).unwrap()).unwrap();
    json["annotations"].as_array().unwrap().iter().map(|a| a["caption"].as_str().unwrap().to_string()).collect()
}

#[test]
fn object_free_pictures_are_captioned_by_what_fills_the_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(4);
    cfg.object_free_share = 0.4;
    let captions = corpus_captions(&cfg, 400, &tmp.path().join("mixed"));
    let names_shape = |c: &str| toe_pipe::world::ALL_SHAPES.iter().any(|s| c.split(' ').any(|w| w == s.name()));
    let object_free: Vec<&String> = captions.iter().filter(|c| !names_shape(c)).collect();
    // 400 draws at 0.4: 160 expected, sd about 10.
    assert!((120..=200).contains(&object_free.len()), "{} object-free pictures of 400", object_free.len());
    let fills =
        ["noise", "waves", "blobs", "horizon", "clutter", "striped", "dotted", "checkered", "gradient", "plain"];
    for c in &object_free {
        assert!(c.split(' ').any(|w| fills.contains(&w)), "{c} names neither a shape nor what fills the frame");
    }
    for kind in fills {
        assert!(object_free.iter().any(|c| c.split(' ').any(|w| w == kind)), "no {kind} picture in {object_free:?}");
    }
}

#[test]
fn descriptors_cover_the_id_classes_in_the_imagenet_format() {
    let cfg = config(0);
    let json: serde_json::Value = serde_json::from_str(&descriptors_json(&cfg)).unwrap();
    let map = json.as_object().unwrap();
    let keys: Vec<&String> = map.keys().collect();
    assert_eq!(keys, id_class_names(&cfg).iter().collect::<Vec<_>>());
    assert!(map.values().all(|v| v.as_array().unwrap().len() >= 3));
}

#[test]
fn bad_configs_are_clear_errors() {
    let err = WorldConfig::new(0, 32, &["circle".into(), "blob".into()]).unwrap_err();
    assert!(err.to_string().contains("unknown shape \"blob\""), "{err}");
    let err = WorldConfig::new(0, 32, &["circle".into()]).unwrap_err();
    assert!(err.to_string().contains("at least two"), "{err}");
    assert!(WorldSet::from_name("imagenet").unwrap_err().to_string().contains("corpus"));
}
