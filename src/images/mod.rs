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

pub mod clip_preprocess;
pub mod convert;
pub mod decode;
pub mod jpeg;
pub mod pillow_resize;

pub use clip_preprocess::{ClipPreprocess, RgbConversion, CLIP_MEAN, CLIP_STD};
pub use decode::{decode, DecodeError, Mode, PilImage, Samples};
