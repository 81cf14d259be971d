//! OpenAI CLIP's image transform (`clip.load(...)[1]`), exactly:
//!
//! ```text
//! Resize(n_px, BICUBIC) -> CenterCrop(n_px) -> convert("RGB") -> ToTensor() -> Normalize(mean, std)
//! ```
//!
//! on a PIL image, with torchvision's size arithmetic and Pillow's pixels.
//! Resize and CenterCrop are done together (only the cropped pixels are
//! computed, see `pillow_resize.rs`); convert, ToTensor and Normalize are per
//! pixel and fused into one table lookup.

use std::cell::RefCell;

use super::convert::{self, SamplesRef};
use super::decode::{self, DecodeError, Mode, PilImage, Samples};
use super::pillow_resize::{self, Window};

/// CLIP's per-channel normalisation mean (R, G, B).
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel normalisation standard deviation (R, G, B).
// Written as in OpenAI's clip.py; torch rounds them to f32 the same way.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Where `convert("RGB")` happens relative to the transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RgbConversion {
    /// torchvision's `ImageFolder` loader (`pil_loader`) converts every image
    /// to RGB when it opens it, before CLIP's transform runs: this is what
    /// the original TOE code (ImageFolder + CLIP preprocess) computes.
    #[default]
    OnLoad,
    /// CLIP's transform applied to `Image.open(path)` directly: Resize works
    /// on the image in its own mode (nearest for palette and 1-bit images,
    /// premultiplied alpha for LA/RGBA, 16-bit for I;16) and the transform's
    /// own `convert("RGB")` runs after the crop.
    InTransform,
}

/// CLIP preprocessing for one resolution.
#[derive(Debug, Clone)]
pub struct ClipPreprocess {
    n_px: usize,
    conversion: RgbConversion,
    /// `lut[c][v]` = (v / 255 - mean[c]) / std[c] in f32, as torchvision's
    /// ToTensor + Normalize compute it.
    lut: [[f32; 256]; 3],
}

/// torchvision's `_compute_resized_output_size` for an int size: the shorter
/// side becomes `n_px`, the longer `int(n_px * long / short)`. Returns
/// (width, height).
pub fn resized_size(width: usize, height: usize, n_px: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // Python: int * int is exact, `/` is the correctly rounded f64 quotient.
    let new_long = ((n_px as f64 * long as f64) / short as f64) as usize;
    if width <= height {
        (n_px, new_long)
    } else {
        (new_long, n_px)
    }
}

/// torchvision's CenterCrop offset: `int(round((size - crop) / 2.0))`, with
/// Python's round half to even.
pub fn crop_offset(size: usize, crop: usize) -> usize {
    debug_assert!(size >= crop);
    let twice = size - crop; // offset = twice / 2, rounded half to even
    let floor = twice / 2;
    if twice % 2 == 1 && floor % 2 == 1 {
        floor + 1
    } else {
        floor
    }
}

impl ClipPreprocess {
    /// Preprocessing to `n_px` x `n_px` (224 for ViT-B/16 and ViT-B/32).
    pub fn new(n_px: usize, conversion: RgbConversion) -> ClipPreprocess {
        assert!(n_px > 0, "CLIP resolution must be positive");
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = ((v as f32) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
        ClipPreprocess { n_px, conversion, lut }
    }

    pub fn n_px(&self) -> usize {
        self.n_px
    }

    pub fn conversion(&self) -> RgbConversion {
        self.conversion
    }

    /// Values of the floats in one image's tensor: `3 * n_px * n_px`.
    pub fn tensor_len(&self) -> usize {
        3 * self.n_px * self.n_px
    }

    /// The resize target and the crop window in it, for a source image size.
    fn geometry(&self, width: usize, height: usize) -> ((usize, usize), Window) {
        let n = self.n_px;
        let (out_w, out_h) = resized_size(width, height, n);
        let window = Window { x: crop_offset(out_w, n), y: crop_offset(out_h, n), width: n, height: n };
        ((out_w, out_h), window)
    }

    /// The source pixels the output depends on, for images resized bicubic
    /// (every mode but P and 1).
    pub fn source_window(&self, width: usize, height: usize) -> Window {
        let ((out_w, out_h), window) = self.geometry(width, height);
        if (out_w, out_h) == (width, height) {
            return window;
        }
        pillow_resize::bicubic_source_window(width, height, out_w, out_h, window)
    }

    /// Decodes an image file for this preprocessing: a JPEG only decodes
    /// the part of the image that the centre crop depends on.
    pub fn decode(&self, bytes: &[u8]) -> Result<PilImage, DecodeError> {
        self.decode_reusing(bytes, Vec::new())
    }

    /// [`ClipPreprocess::decode`] into `buffer`'s memory (from an earlier
    /// image's [`PilImage::into_buffer`]).
    pub fn decode_reusing(&self, bytes: &[u8], buffer: Vec<u8>) -> Result<PilImage, DecodeError> {
        decode::decode_part(bytes, |w, h| Some(self.source_window(w, h)), buffer)
    }

    /// The RGB pixels that ToTensor receives: `n_px * n_px * 3` bytes,
    /// row-major, i.e. `np.asarray(transform_up_to_convert(img))`.
    ///
    /// Panics if `img` was decoded for a smaller region than this
    /// preprocessing needs (see [`ClipPreprocess::decode`]).
    pub fn rgb(&self, img: &PilImage) -> Vec<u8> {
        self.with_rgb(img, <[u8]>::to_vec)
    }

    /// The normalised tensor of one image, written into `out` as
    /// `[3, n_px, n_px]` (channel planes), exactly as CLIP's transform.
    pub fn write_tensor(&self, img: &PilImage, out: &mut [f32]) {
        let plane = self.n_px * self.n_px;
        assert_eq!(out.len(), 3 * plane, "output slice for one [3, n_px, n_px] image");
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        self.with_rgb(img, |rgb| {
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                r[i] = self.lut[0][px[0] as usize];
                g[i] = self.lut[1][px[1] as usize];
                b[i] = self.lut[2][px[2] as usize];
            }
        })
    }

    /// Runs `f` on [`ClipPreprocess::rgb`]'s pixels, held in this thread's
    /// scratch buffers.
    fn with_rgb<R>(&self, img: &PilImage, f: impl FnOnce(&[u8]) -> R) -> R {
        if img.valid != Window::whole(img.width, img.height) {
            assert!(
                img.valid.contains(&self.source_window(img.width, img.height)),
                "image decoded for another crop than n_px = {}",
                self.n_px
            );
        }
        let converted;
        let img = match self.conversion {
            RgbConversion::OnLoad if img.mode != Mode::Rgb => {
                converted = convert::to_rgb(img);
                &converted
            }
            _ => img,
        };
        let (out_size, window) = self.geometry(img.width, img.height);
        let palette = img.palette.as_deref();
        SCRATCH.with_borrow_mut(|s| {
            s.rgb.clear();
            match &img.samples {
                Samples::U16(src) => {
                    let (w, h) = out_size;
                    let px = pillow_resize::bicubic_u16(src, img.width, img.height, w, h, window);
                    convert::append_rgb(img.mode, SamplesRef::U16(&px), palette, &mut s.rgb);
                }
                Samples::U8(src) => {
                    let size = (img.width, img.height, out_size.0, out_size.1);
                    resize_u8(img.mode, src, size, window, &mut s.rows, &mut s.pixels);
                    convert::append_rgb(img.mode, SamplesRef::U8(&s.pixels), palette, &mut s.rgb);
                }
            }
            f(&s.rgb)
        })
    }
}

/// Buffers reused from one image to the next on each thread. Allocating
/// them per image costs more than the arithmetic: glibc gives blocks this
/// large back to the system, and the next image faults them in again.
#[derive(Default)]
struct Scratch {
    /// Rows after the horizontal pass.
    rows: Vec<u8>,
    /// The crop after resizing, in the image's mode.
    pixels: Vec<u8>,
    /// The crop as RGB.
    rgb: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `Image.resize((out_w, out_h), BICUBIC)` + crop for 8-bit modes, following
/// Pillow's per-mode rules (Image.resize): palette and 1-bit images are
/// resized nearest-neighbour; LA and RGBA go through premultiplied alpha.
/// A resize to the same size is skipped (torchvision returns the image).
fn resize_u8(
    mode: Mode,
    src: &[u8],
    size: (usize, usize, usize, usize),
    window: Window,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    use pillow_resize::{bicubic_u8_into, nearest_u8};
    let (width, height, out_w, out_h) = size;
    if (out_w, out_h) == (width, height) {
        *out = pillow_resize::crop(src, width, mode.bands(), window);
        return;
    }
    match mode {
        Mode::P | Mode::Bilevel => *out = nearest_u8::<1>(src, width, height, out_w, out_h, window),
        Mode::L => bicubic_u8_into::<1>(src, size, window, scratch, out),
        Mode::Rgb | Mode::Cmyk => bicubic_u8_into::<4>(src, size, window, scratch, out),
        Mode::LA => {
            let mut pre = src.to_vec();
            convert::premultiply::<2>(&mut pre);
            bicubic_u8_into::<2>(&pre, size, window, scratch, out);
            convert::unpremultiply::<2>(out);
        }
        Mode::Rgba => {
            let mut pre = src.to_vec();
            convert::premultiply::<4>(&mut pre);
            bicubic_u8_into::<4>(&pre, size, window, scratch, out);
            convert::unpremultiply::<4>(out);
        }
        Mode::I16 => unreachable!("I;16 has 16-bit samples"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_follows_torchvision() {
        assert_eq!(resized_size(500, 375, 224), (298, 224));
        assert_eq!(resized_size(375, 500, 224), (224, 298));
        assert_eq!(resized_size(224, 224, 224), (224, 224));
        assert_eq!(resized_size(3, 500, 224), (224, 37333));
        assert_eq!(resized_size(1, 1, 224), (224, 224));
        assert_eq!(resized_size(640, 480, 224), (298, 224));
    }

    #[test]
    fn crop_offset_rounds_half_to_even() {
        assert_eq!(crop_offset(298, 224), 37);
        assert_eq!(crop_offset(225, 224), 0); // round(0.5) == 0
        assert_eq!(crop_offset(227, 224), 2); // round(1.5) == 2
        assert_eq!(crop_offset(229, 224), 2); // round(2.5) == 2
        assert_eq!(crop_offset(231, 224), 4); // round(3.5) == 4
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn lut_matches_formula() {
        let p = ClipPreprocess::new(4, RgbConversion::OnLoad);
        assert_eq!(p.lut[0][0], (0.0 - CLIP_MEAN[0]) / CLIP_STD[0]);
        assert_eq!(p.lut[2][255], (1.0 - CLIP_MEAN[2]) / CLIP_STD[2]);
    }

    #[test]
    fn grey_and_rgb_of_same_values_agree() {
        let (w, h) = (7, 5);
        let grey: Vec<u8> = (0..w * h).map(|i| (i * 11 % 256) as u8).collect();
        let rgbx: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v, 0]).collect();
        let p = ClipPreprocess::new(4, RgbConversion::InTransform);
        let a = p.rgb(&PilImage::new_u8(Mode::L, w, h, grey));
        let b = p.rgb(&PilImage::new_u8(Mode::Rgb, w, h, rgbx));
        assert_eq!(a, b);
    }
}
