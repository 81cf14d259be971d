//! The built-in demo world: seeded, procedurally drawn pictures of shapes on
//! backgrounds, with captions, written in the same layouts as the real
//! datasets (ImageFolder for classification sets, COCO-style captions for the
//! pre-training corpus, a descriptors JSON like `descriptors_imagenet.json`),
//! so every downstream op is the one that runs on ImageNet.
//!
//! Every image is a pure function of (seed, set, folder, index): sets can be
//! generated in parallel, and growing a set keeps its existing images.

mod render;
mod rng;
mod scene;
mod shapes;

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

pub use rng::Rng;
pub use scene::{caption_templates, with_articles, ObjectScene};
pub use shapes::{Shape, ALL_SHAPES};

/// Which dataset of the world to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldSet {
    /// Image-caption pairs over all twelve shapes: the world's "web" for
    /// pre-training CLIP and its "COCO" for the caption decoder.
    Corpus,
    /// The ID classification task, train split (ImageFolder).
    IdTrain,
    /// The ID classification task, val split (ImageFolder).
    IdVal,
    /// Near OoD: shapes that are not ID classes (like ImageNet-20 vs -10).
    OodNear,
    /// Scene OoD: horizons and clutter, no object (like SUN and Places).
    OodScenes,
    /// Far OoD: full-frame textures and noise (like Textures).
    OodTextures,
    /// An auxiliary outlier dataset for outlier exposure with real images
    /// (DTD's role in the image-vs-text study): the world's background
    /// patterns full-frame, with no object. No test set has them: ID and
    /// near-OoD images show them only behind a shape, the texture set is
    /// noise, blobs and waves, the scene set horizons and clutter.
    AuxBackgrounds,
}

impl WorldSet {
    pub const ALL: [WorldSet; 7] = [
        WorldSet::Corpus,
        WorldSet::IdTrain,
        WorldSet::IdVal,
        WorldSet::OodNear,
        WorldSet::OodScenes,
        WorldSet::OodTextures,
        WorldSet::AuxBackgrounds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorldSet::Corpus => "corpus",
            WorldSet::IdTrain => "id_train",
            WorldSet::IdVal => "id_val",
            WorldSet::OodNear => "ood_near",
            WorldSet::OodScenes => "ood_scenes",
            WorldSet::OodTextures => "ood_textures",
            WorldSet::AuxBackgrounds => "aux_backgrounds",
        }
    }

    pub fn from_name(name: &str) -> Result<WorldSet> {
        match WorldSet::ALL.iter().find(|s| s.name() == name) {
            Some(s) => Ok(*s),
            None => {
                let names: Vec<&str> = WorldSet::ALL.iter().map(|s| s.name()).collect();
                bail!("unknown world set {name:?}; expected one of {}", names.join(", "))
            }
        }
    }
}

/// The world's fixed choices: seed, image size and which shapes are ID.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub image_size: usize,
    /// ID classes, in label order (sorted by name, as ImageFolder sorts).
    pub id_classes: Vec<Shape>,
    /// The share of corpus pictures with no object (textures, scenery,
    /// patterns), 0 to 1; see `scene::object_free_picture`.
    pub object_free_share: f64,
}

impl WorldConfig {
    /// Parse shape names (as pipeline params give them).
    pub fn new(seed: u64, image_size: usize, id_classes: &[String]) -> Result<Self> {
        if !(8..=256).contains(&image_size) {
            bail!("image_size {image_size} is outside 8..=256");
        }
        let mut classes = Vec::new();
        for name in id_classes {
            let shape = Shape::from_name(name).with_context(|| {
                let names: Vec<&str> = ALL_SHAPES.iter().map(|s| s.name()).collect();
                format!("unknown shape {name:?} in id_classes; the world has {}", names.join(", "))
            })?;
            if classes.contains(&shape) {
                bail!("shape {name:?} is listed twice in id_classes");
            }
            classes.push(shape);
        }
        if classes.len() < 2 {
            bail!("id_classes needs at least two shapes, got {}", classes.len());
        }
        if classes.len() == ALL_SHAPES.len() {
            bail!("id_classes takes every shape; leave some out for the near-OoD set");
        }
        // Label order is ImageFolder's: class folders sorted by name.
        classes.sort_by_key(|s| s.name());
        Ok(WorldConfig { seed, image_size, id_classes: classes, object_free_share: 0.0 })
    }

    /// Shapes that are not ID classes: the near-OoD set's classes.
    pub fn near_ood_classes(&self) -> Vec<Shape> {
        ALL_SHAPES.iter().copied().filter(|s| !self.id_classes.contains(s)).collect()
    }
}

/// What `write_set` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub set: &'static str,
    pub images: usize,
    pub folders: Vec<String>,
}

/// Write `set` into `dir` (created; must not exist or be empty). For ID
/// sets `count` is per class; for the others it is the total.
pub fn write_set(cfg: &WorldConfig, set: WorldSet, count: usize, dir: &Path) -> Result<SetSummary> {
    if count == 0 {
        bail!("count must be positive for world set {}", set.name());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    match set {
        WorldSet::Corpus => write_corpus(cfg, count, dir),
        WorldSet::IdTrain | WorldSet::IdVal => {
            let folders: Vec<String> = cfg.id_classes.iter().map(|s| s.name().to_string()).collect();
            write_folders(cfg, set, &folders, count, dir)
        }
        WorldSet::OodNear => {
            let folders: Vec<String> = cfg.near_ood_classes().iter().map(|s| s.name().to_string()).collect();
            let per = count.div_ceil(folders.len());
            write_folders(cfg, set, &folders, per, dir)
        }
        WorldSet::OodScenes => write_folders(cfg, set, &["clutter".into(), "horizon".into()], count.div_ceil(2), dir),
        WorldSet::OodTextures => {
            write_folders(cfg, set, &["blobs".into(), "noise".into(), "waves".into()], count.div_ceil(3), dir)
        }
        WorldSet::AuxBackgrounds => {
            let folders = scene::pattern_names();
            write_folders(cfg, set, &folders, count.div_ceil(folders.len()), dir)
        }
    }
}

/// Draw one image of `folder` (a shape name, or a scene/texture kind).
fn draw(cfg: &WorldConfig, set: WorldSet, folder: &str, index: usize) -> image::RgbImage {
    let mut rng = Rng::for_item(cfg.seed, &format!("{}/{folder}", set.name()), index as u64);
    let canvas = match set {
        WorldSet::OodScenes => scene::render_scenery(folder, cfg.image_size, &mut rng),
        WorldSet::OodTextures => scene::render_texture(folder, cfg.image_size, &mut rng),
        WorldSet::AuxBackgrounds => scene::render_pattern(folder, cfg.image_size, &mut rng),
        _ => {
            let shape = Shape::from_name(folder).expect("folders of object sets are shape names");
            ObjectScene::sample(shape, &mut rng).render(cfg.image_size, &mut rng)
        }
    };
    canvas.to_rgb8()
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save_with_format(path, image::ImageFormat::Png).with_context(|| format!("writing {}", path.display()))
}

fn write_folders(
    cfg: &WorldConfig,
    set: WorldSet,
    folders: &[String],
    per_folder: usize,
    dir: &Path,
) -> Result<SetSummary> {
    for folder in folders {
        fs::create_dir_all(dir.join(folder)).with_context(|| format!("creating {}", dir.join(folder).display()))?;
    }
    let jobs: Vec<(&String, usize)> = folders.iter().flat_map(|f| (0..per_folder).map(move |i| (f, i))).collect();
    jobs.par_iter().try_for_each(|(folder, i)| {
        let img = draw(cfg, set, folder, *i);
        save_png(&img, &dir.join(folder).join(format!("{i:06}.png")))
    })?;
    Ok(SetSummary { set: set.name(), images: jobs.len(), folders: folders.to_vec() })
}

/// COCO-style caption file: the subset of the format the caption tools read.
#[derive(Serialize)]
struct CocoCaptions {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Serialize)]
struct CocoImage {
    id: usize,
    file_name: String,
}

#[derive(Serialize)]
struct CocoAnnotation {
    id: usize,
    image_id: usize,
    caption: String,
}

/// Corpus layout: `images/NNNNNN.png` and `captions.json` (COCO style, one
/// caption per image), drawn over all twelve shapes.
fn write_corpus(cfg: &WorldConfig, count: usize, dir: &Path) -> Result<SetSummary> {
    let images_dir = dir.join("images");
    fs::create_dir_all(&images_dir).with_context(|| format!("creating {}", images_dir.display()))?;
    let captions: Vec<String> = (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::for_item(cfg.seed, "corpus", i as u64);
            // Drawn only when asked for, so that a corpus without them
            // keeps every picture it had before.
            let (canvas, caption) = if cfg.object_free_share > 0.0 && rng.chance(cfg.object_free_share as f32) {
                scene::object_free_picture(cfg.image_size, &mut rng)
            } else {
                let shape = *rng.pick(&ALL_SHAPES);
                let scene = ObjectScene::sample(shape, &mut rng);
                let caption = scene.caption(&mut rng);
                (scene.render(cfg.image_size, &mut rng), caption)
            };
            save_png(&canvas.to_rgb8(), &images_dir.join(format!("{i:06}.png")))?;
            Ok(caption)
        })
        .collect::<Result<_>>()?;
    let coco = CocoCaptions {
        images: (0..count).map(|i| CocoImage { id: i, file_name: format!("{i:06}.png") }).collect(),
        annotations: captions
            .into_iter()
            .enumerate()
            .map(|(i, caption)| CocoAnnotation { id: i, image_id: i, caption })
            .collect(),
    };
    let path = dir.join("captions.json");
    fs::write(&path, serde_json::to_vec_pretty(&coco)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(SetSummary { set: "corpus", images: count, folders: vec!["images".into()] })
}

/// Descriptors of the ID classes in the format of `descriptors_imagenet.json`:
/// a JSON object from class name to a list of phrases, in label order.
pub fn descriptors_json(cfg: &WorldConfig) -> String {
    let mut out = serde_json::Map::new();
    for shape in &cfg.id_classes {
        let phrases = shape.descriptors().iter().map(|p| serde_json::Value::from(*p)).collect();
        out.insert(shape.name().to_string(), serde_json::Value::Array(phrases));
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(out)).expect("a map of strings serialises")
}

/// The ID class names in label order.
pub fn id_class_names(cfg: &WorldConfig) -> Vec<String> {
    cfg.id_classes.iter().map(|s| s.name().to_string()).collect()
}
