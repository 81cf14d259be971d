//! COCO-style caption corpora: a captions JSON (`images` with `id` and
//! `file_name`, `annotations` with `image_id` and `caption`) beside a folder
//! of images. MS-COCO's `annotations/captions_train2017.json` + `train2017/`
//! has this shape, and so does the demo world's corpus (`captions.json` +
//! `images/`). The ops that learn from captions (`train_clip`,
//! `train_decoder`) read corpora through [`CaptionCorpus::open`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    caption: String,
}

/// Images and their captions. COCO gives about five captions per image, so
/// captions point into `images` through `image_of_caption`.
#[derive(Debug, Clone)]
pub struct CaptionCorpus {
    /// Image files, in the JSON's `images` order (images without a caption
    /// are left out).
    pub images: Vec<PathBuf>,
    /// Every caption, trimmed, in the JSON's `annotations` order.
    pub captions: Vec<String>,
    /// `images[image_of_caption[i]]` is what `captions[i]` describes.
    pub image_of_caption: Vec<usize>,
}

impl CaptionCorpus {
    /// Reads `root/captions_json`; image paths are `root/image_dir/file_name`.
    pub fn open(root: &Path, captions_json: &str, image_dir: &str) -> Result<CaptionCorpus> {
        let json_path = root.join(captions_json);
        let bytes = std::fs::read(&json_path).with_context(|| {
            format!(
                "reading the captions file {} (set the `captions_json` param to its path inside the corpus folder)",
                json_path.display()
            )
        })?;
        let file: CocoFile = serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: not a COCO-style captions file (expected `images` with id/file_name and `annotations` with image_id/caption)", json_path.display())
        })?;
        let image_root = root.join(image_dir);
        let mut slot_of_id: HashMap<u64, usize> = HashMap::new();
        let mut used: Vec<Option<usize>> = Vec::with_capacity(file.images.len());
        for (i, image) in file.images.iter().enumerate() {
            if slot_of_id.insert(image.id, i).is_some() {
                bail!("{}: image id {} appears twice", json_path.display(), image.id);
            }
            used.push(None);
        }
        let mut corpus = CaptionCorpus { images: Vec::new(), captions: Vec::new(), image_of_caption: Vec::new() };
        for annotation in &file.annotations {
            let Some(&slot) = slot_of_id.get(&annotation.image_id) else {
                bail!(
                    "{}: a caption refers to image id {}, which `images` does not list",
                    json_path.display(),
                    annotation.image_id
                );
            };
            let index = *used[slot].get_or_insert_with(|| {
                corpus.images.push(image_root.join(&file.images[slot].file_name));
                corpus.images.len() - 1
            });
            corpus.captions.push(annotation.caption.trim().to_string());
            corpus.image_of_caption.push(index);
        }
        if corpus.captions.is_empty() {
            bail!("{}: the corpus has no captions", json_path.display());
        }
        if let Some(missing) = corpus.images.iter().find(|p| !p.is_file()) {
            bail!(
                "{}: image {} listed in {} does not exist (is `image_dir` = {image_dir:?} the folder that holds the images?)",
                root.display(),
                missing.display(),
                json_path.display()
            );
        }
        Ok(corpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_point_at_their_images() {
        let dir = std::env::temp_dir().join(format!("toe-coco-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("imgs")).unwrap();
        for name in ["a.png", "b.png", "c.png"] {
            std::fs::write(dir.join("imgs").join(name), b"x").unwrap();
        }
        let json = r#"{"images": [{"id": 7, "file_name": "a.png"}, {"id": 3, "file_name": "b.png"}, {"id": 9, "file_name": "c.png"}],
            "annotations": [{"id": 1, "image_id": 3, "caption": " one "}, {"id": 2, "image_id": 7, "caption": "two"}, {"id": 5, "image_id": 3, "caption": "three"}]}"#;
        std::fs::write(dir.join("caps.json"), json).unwrap();
        let corpus = CaptionCorpus::open(&dir, "caps.json", "imgs").unwrap();
        assert_eq!(corpus.captions, ["one", "two", "three"]);
        assert_eq!(corpus.image_of_caption, [0, 1, 0]);
        assert_eq!(corpus.images, [dir.join("imgs/b.png"), dir.join("imgs/a.png")]);
        let err = CaptionCorpus::open(&dir, "caps.json", "elsewhere").unwrap_err();
        assert!(format!("{err:#}").contains("image_dir"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
