//! Image datasets (ImageFolder) and CLIP preprocessing.
//!
//! What the original Python computes, to the pixel: `ImageFolder(root,
//! transform=clip_preprocess)` opens each file with Pillow, converts it to
//! RGB ([`RgbConversion::OnLoad`]; [`RgbConversion::InTransform`] gives
//! `clip_preprocess(Image.open(path))` instead), then resizes bicubic,
//! crops the centre and normalises. `tests/testsuite/images_pillow_parity.rs` checks
//! this against the venv's Pillow + torchvision on images of odd sizes and
//! modes; they agree exactly.
//!
//! * [`folder`]: torchvision's `ImageFolder` layout (labels from sorted class
//!   folders, files sorted, torchvision's extensions).
//! * [`decode`](mod@decode): files to Pillow-equivalent images (mode and samples); JPEG
//!   through libjpeg-turbo ([`jpeg`], the decoder Pillow bundles; the build
//!   needs its headers, Debian's `libjpeg62-turbo-dev`).
//! * [`clip_preprocess`]: OpenAI CLIP's transform, built on
//!   [`pillow_resize`] (Pillow's resampling arithmetic, computed for the
//!   crop only) and [`convert`] (Pillow's mode conversions).
//! * [`batches`]: parallel decode + preprocess into `[B, 3, n, n]` tensors
//!   with bounded prefetch.
//!
//! Speed comes from doing less, never from other arithmetic: JPEGs decode
//! only the rows and columns the crop reads, the resize computes only the
//! cropped pixels, with AVX2 where the CPU has it (same integer sums), and
//! ToTensor + Normalize is one table lookup. `cargo bench --bench images`
//! compares against Pillow + torchvision.

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
    #[error("cannot decode image {path}: {source}")]
    Decode { path: PathBuf, source: DecodeError },
    #[error("invalid image loading option: {0}")]
    InvalidOption(String),
}

/// Reads and decodes one image file as Pillow's `Image.open` would see it.
pub fn load_image(path: &Path) -> Result<PilImage, ImagesError> {
    let mut bytes = Vec::new();
    read_file(path, &mut bytes)?;
    decode(&bytes).map_err(|source| ImagesError::Decode { path: path.to_path_buf(), source })
}

/// Reads and decodes one image file for `preprocess`, decoding only what
/// its centre crop needs where the format allows (JPEG).
pub fn load_image_for(path: &Path, preprocess: &ClipPreprocess) -> Result<PilImage, ImagesError> {
    let mut bytes = Vec::new();
    read_file(path, &mut bytes)?;
    preprocess.decode(&bytes).map_err(|source| ImagesError::Decode { path: path.to_path_buf(), source })
}

/// The contents of `path`, into `buffer` (replacing what it held).
fn read_file(path: &Path, buffer: &mut Vec<u8>) -> Result<(), ImagesError> {
    use std::io::Read;
    let io = |source| ImagesError::Io { path: path.to_path_buf(), source };
    buffer.clear();
    std::fs::File::open(path).map_err(io)?.read_to_end(buffer).map_err(io)?;
    Ok(())
}
