//! Image datasets (ImageFolder) and CLIP preprocessing.
//!
//! * [`folder`]: torchvision's `ImageFolder` layout (labels from sorted class
//!   folders, files sorted, torchvision's extensions).
//! * [`decode`]: files to Pillow-equivalent images (mode and samples); JPEG
//!   through libjpeg-turbo ([`jpeg`]) like Pillow.
//! * [`clip_preprocess`]: OpenAI CLIP's transform, pixel-exact against
//!   Pillow + torchvision, built on [`pillow_resize`] and [`convert`].
//! * [`batches`]: parallel decode + preprocess into `[B, 3, n, n]` tensors
//!   with bounded prefetch.

use std::path::{Path, PathBuf};

pub mod batches;
pub mod clip_preprocess;
pub mod convert;
pub mod decode;
pub mod folder;
pub mod jpeg;
pub mod pillow_resize;
mod resample_kernels;

pub use batches::{Batch, BatchOptions, Batches, SkippedFile};
pub use clip_preprocess::{ClipPreprocess, RgbConversion, CLIP_MEAN, CLIP_STD};
pub use decode::{decode, DecodeError, Mode, PilImage, Samples};
pub use folder::{FolderOptions, ImageFolder, Sample, IMG_EXTENSIONS};

const LAYOUT: &str = "expected ImageFolder layout: <root>/<class>/<image> with one sub-folder per class \
                      (images may sit in nested folders) and extensions .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp";

/// Errors of the image pipeline; each names the folder or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("image folder {root} does not exist; {LAYOUT}")]
    RootMissing { root: PathBuf },
    #[error("image folder {root} is not a directory; {LAYOUT}")]
    RootNotADirectory { root: PathBuf },
    #[error("found no class folder in {root}; {LAYOUT}")]
    NoClassFolders { root: PathBuf },
    #[error("found no image file for the classes {} in {root}; {LAYOUT}", classes.join(", "))]
    EmptyClasses { root: PathBuf, classes: Vec<String> },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {path}: {source} (to leave out unreadable files, ask to skip them)")]
    Decode { path: PathBuf, source: DecodeError },
    #[error("invalid image loading option: {0}")]
    InvalidOption(String),
}

/// Reads and decodes one image file as Pillow's `Image.open` would see it.
pub fn load_image(path: &Path) -> Result<PilImage, ImagesError> {
    let bytes = read(path)?;
    decode(&bytes).map_err(|source| ImagesError::Decode { path: path.to_path_buf(), source })
}

/// Reads and decodes one image file for `preprocess`, decoding only what
/// its centre crop needs where the format allows (JPEG).
pub fn load_image_for(path: &Path, preprocess: &ClipPreprocess) -> Result<PilImage, ImagesError> {
    let bytes = read(path)?;
    preprocess.decode(&bytes).map_err(|source| ImagesError::Decode { path: path.to_path_buf(), source })
}

fn read(path: &Path) -> Result<Vec<u8>, ImagesError> {
    std::fs::read(path).map_err(|source| ImagesError::Io { path: path.to_path_buf(), source })
}
