//! Pillow's `Image.resize` arithmetic, reproduced so that resized pixels are
//! equal to Pillow's (libImaging/Resample.c and Geometry.c), restricted to a
//! crop window.
//!
//! Bicubic resampling in Pillow is a separable convolution: a horizontal
//! pass over the source rows that the vertical pass needs, rounded to the
//! image's sample type, then a vertical pass. The filter (cubic, a = -0.5,
//! support 2) is widened by the downscale factor, which is Pillow's
//! antialiasing. Per output position the weights are computed in f64,
//! normalised to sum to one, and for 8-bit images turned into 22-bit fixed
//! point integers; sums start at one half and are clipped to 0..=255. 16-bit
//! grey images (`I;16`) keep f64 weights and round each sum.
//!
//! Every output pixel depends only on its own row and column weights, so
//! computing just the pixels inside a crop window gives exactly the pixels
//! Pillow would produce for the whole image and then crop: CLIP's centre
//! crop never needs the parts outside it.
//!
//! The `nearest` resize (Pillow uses it for palette and 1-bit images
//! whatever filter is asked) follows Geometry.c's affine scaling, including
//! its accumulation of the source position in f64.

use std::ops::Range;

use super::resample_kernels;

/// Bits of fraction in Pillow's fixed point weights: 32 - 8 - 2.
pub(super) const PRECISION_BITS: u32 = 22;
/// Pillow's sums start at one half (rounding).
pub(super) const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}
const BICUBIC_SUPPORT: f64 = 2.0;

/// A rectangle of output pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Window {
    /// All of a `width x height` image.
    pub fn whole(width: usize, height: usize) -> Window {
        Window { x: 0, y: 0, width, height }
    }

    /// Whether `other` lies inside this window.
    pub fn contains(&self, other: &Window) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.x + other.width <= self.x + self.width
            && other.y + other.height <= self.y + self.height
    }

    fn cols(&self) -> Range<usize> {
        self.x..self.x + self.width
    }
    fn rows(&self) -> Range<usize> {
        self.y..self.y + self.height
    }
}

/// Resampling weights along one axis for a range of output positions.
struct Weights {
    /// Per output position: first source index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output position (those past its tap count are 0).
    ksize: usize,
    values: Vec<f64>,
}

impl Weights {
    /// Pillow's `precompute_coeffs` for an `in_size` -> `out_size` resize with
    /// the default box (the whole source), for the output positions in
    /// `positions`.
    fn bicubic(in_size: usize, out_size: usize, positions: Range<usize>) -> Weights {
        // Pillow passes the box as C floats and subtracts them in float.
        let span = (in_size as f32 - 0.0f32) as f64;
        let scale = span / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(positions.len());
        let mut values = vec![0.0f64; positions.len() * ksize];
        for (i, xx) in positions.enumerate() {
            let center = 0.0 + (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; negatives are clamped anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let taps = xmax.saturating_sub(xmin);
            let k = &mut values[i * ksize..i * ksize + taps];
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate() {
                *w = bicubic(((x + xmin) as f64 - center + 0.5) * inv);
                total += *w;
            }
            if total != 0.0 {
                for w in k.iter_mut() {
                    *w /= total;
                }
            }
            bounds.push((xmin, taps));
        }
        Weights { bounds, ksize, values }
    }

    fn taps(&self, i: usize) -> &[f64] {
        &self.values[i * self.ksize..i * self.ksize + self.bounds[i].1]
    }

    /// Pillow's `normalize_coeffs_8bpc`: weights as 22-bit fixed point,
    /// rounded half away from zero.
    fn fixed(&self) -> FixedWeights {
        let one = (1u32 << PRECISION_BITS) as f64;
        let values = self
            .values
            .iter()
            .map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 })
            .collect();
        FixedWeights { bounds: self.bounds.clone(), ksize: self.ksize, values }
    }

    fn source_span(&self) -> Range<usize> {
        source_span(&self.bounds)
    }
}

/// Source range used by all output positions together.
fn source_span(bounds: &[(usize, usize)]) -> Range<usize> {
    let first = bounds.iter().map(|b| b.0).min().unwrap_or(0);
    let end = bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(first);
    first..end.max(first)
}

/// 22-bit fixed point weights, `ksize` per output position.
pub(super) struct FixedWeights {
    /// Per output position: first source index and number of taps.
    pub(super) bounds: Vec<(usize, usize)>,
    pub(super) ksize: usize,
    pub(super) values: Vec<i32>,
}

impl FixedWeights {
    pub(super) fn taps(&self, i: usize) -> &[i32] {
        &self.values[i * self.ksize..i * self.ksize + self.bounds[i].1]
    }
}

/// Fixed point bicubic weights, for the kernels' tests.
#[cfg(test)]
pub(super) fn test_weights(in_size: usize, out_size: usize, positions: Range<usize>) -> FixedWeights {
    Weights::bicubic(in_size, out_size, positions).fixed()
}

/// Pillow's clip8: the sum carries 22 fraction bits; floor, then clamp.
#[inline(always)]
pub(super) fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Whether Pillow runs each pass (`need_horizontal`, `need_vertical`).
fn passes(src: (usize, usize), out: (usize, usize)) -> (bool, bool) {
    (src.0 != out.0, src.1 != out.1)
}

/// The source pixels that [`bicubic_u8`] / [`bicubic_u16`] read to produce
/// `window` of a `width x height` -> `out_width x out_height` resize.
pub fn bicubic_source_window(
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    window: Window,
) -> Window {
    let (need_h, need_v) = passes((width, height), (out_width, out_height));
    let cols =
        if need_h { source_span(&Weights::bicubic(width, out_width, window.cols()).bounds) } else { window.cols() };
    let rows =
        if need_v { source_span(&Weights::bicubic(height, out_height, window.rows()).bounds) } else { window.rows() };
    Window { x: cols.start, y: rows.start, width: cols.len(), height: rows.len() }
}

/// Bicubic resize of an 8-bit image with `C` interleaved bands from
/// `width x height` to `out_width x out_height`, returning only the pixels in
/// `window` (row-major, `C` bytes per pixel).
pub fn bicubic_u8<const C: usize>(
    src: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    window: Window,
) -> Vec<u8> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let size = (width, height, out_width, out_height);
    bicubic_u8_into::<C>(src, size, window, &mut scratch, &mut out);
    out
}

/// [`bicubic_u8`] writing into `out`, with `scratch` for the intermediate
/// rows: callers that resize many images reuse both buffers.
pub fn bicubic_u8_into<const C: usize>(
    src: &[u8],
    (width, height, out_width, out_height): (usize, usize, usize, usize),
    window: Window,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    assert_eq!(src.len(), width * height * C, "source buffer size");
    assert!(window.x + window.width <= out_width && window.y + window.height <= out_height);
    let (need_h, need_v) = passes((width, height), (out_width, out_height));
    let vert = Weights::bicubic(height, out_height, window.rows()).fixed();
    // Rows of the source (or of the horizontally resized image) in use.
    let rows = if need_v { source_span(&vert.bounds) } else { window.rows() };
    // Horizontal pass, the window's columns over the rows in use, into
    // `out` if it is the last pass, else into `scratch`.
    let tmp = if need_v { &mut *scratch } else { &mut *out };
    if need_h {
        let horiz = Weights::bicubic(width, out_width, window.cols()).fixed();
        resample_kernels::horizontal::<C>(src, width, rows.clone(), &horiz, tmp);
    } else {
        // Pillow skips the pass; take the window's columns as they are.
        let cols = Window { y: rows.start, height: rows.len(), ..window };
        tmp.clear();
        crop_into(src, width, C, cols, tmp);
    }
    if need_v {
        resample_kernels::vertical::<C>(scratch, window.width, rows.start, &vert, out);
    }
}

/// Pillow's `ROUND_UP` then the 16-bit store of Resample.c's 16bpc passes:
/// low and high bytes are clipped separately, so a sum above 65535 keeps its
/// low byte and a negative sum becomes 0.
fn store_u16(sum: f64) -> u16 {
    let v = if sum >= 0.0 { sum + 0.5 } else { sum - 0.5 } as i32;
    let lo = (v % 256).clamp(0, 255) as u16;
    let hi = (v >> 8).clamp(0, 255) as u16;
    (hi << 8) | lo
}

/// Bicubic resize of a 16-bit single band image (Pillow's `I;16`), window
/// only, as [`bicubic_u8`].
pub fn bicubic_u16(
    src: &[u16],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    window: Window,
) -> Vec<u16> {
    assert_eq!(src.len(), width * height, "source buffer size");
    let (need_h, need_v) = passes((width, height), (out_width, out_height));
    let vert = Weights::bicubic(height, out_height, window.rows());
    let rows = if need_v { vert.source_span() } else { window.rows() };
    let mut tmp;
    if need_h {
        tmp = Vec::with_capacity(rows.len() * window.width);
        let horiz = Weights::bicubic(width, out_width, window.cols());
        for y in rows.clone() {
            let row = &src[y * width..(y + 1) * width];
            for (i, &(xmin, _)) in horiz.bounds.iter().enumerate() {
                let mut sum = 0.0f64;
                for (t, &k) in horiz.taps(i).iter().enumerate() {
                    sum += row[xmin + t] as f64 * k;
                }
                tmp.push(store_u16(sum));
            }
        }
    } else {
        tmp = crop(src, width, 1, Window { y: rows.start, height: rows.len(), ..window });
    }
    if !need_v {
        return tmp;
    }
    let mut out = Vec::with_capacity(window.width * window.height);
    for (i, &(ymin, _)) in vert.bounds.iter().enumerate() {
        let k = vert.taps(i);
        for x in 0..window.width {
            let mut sum = 0.0f64;
            for (t, &kt) in k.iter().enumerate() {
                sum += tmp[(ymin + t - rows.start) * window.width + x] as f64 * kt;
            }
            out.push(store_u16(sum));
        }
    }
    out
}

/// The pixels of `window` in an image `width` pixels wide with `bands`
/// samples per pixel.
pub fn crop<T: Copy>(src: &[T], width: usize, bands: usize, window: Window) -> Vec<T> {
    let mut out = Vec::with_capacity(window.width * window.height * bands);
    crop_into(src, width, bands, window, &mut out);
    out
}

/// [`crop`], appending to `out`.
fn crop_into<T: Copy>(src: &[T], width: usize, bands: usize, window: Window, out: &mut Vec<T>) {
    for y in window.rows() {
        let start = (y * width + window.x) * bands;
        out.extend_from_slice(&src[start..start + window.width * bands]);
    }
}

/// Source index per output position for Pillow's nearest-neighbour resize
/// (Geometry.c `ImagingScaleAffine`): the position starts at half a step and
/// accumulates the step in f64; `None` outside the source (Pillow fills 0).
fn nearest_map(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let step = (in_size as f32 - 0.0f32) as f64 / out_size as f64;
    let mut pos = 0.0 + step * 0.5;
    let mut map = Vec::with_capacity(out_size);
    for _ in 0..out_size {
        // COORD(v): -1 for negatives, else truncation
        let index = if pos < 0.0 { None } else { Some(pos as i64 as usize) };
        map.push(index.filter(|&i| i < in_size));
        pos += step;
    }
    map
}

/// Nearest-neighbour resize (Pillow's choice for modes `P` and `1`), window
/// only, `C` bytes per pixel.
pub fn nearest_u8<const C: usize>(
    src: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    window: Window,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * C, "source buffer size");
    if (width, height) == (out_width, out_height) {
        // Pillow copies (the `box` matches the size): just crop.
        return crop(src, width, C, window);
    }
    let xs = nearest_map(width, out_width);
    let ys = nearest_map(height, out_height);
    let mut out = vec![0u8; window.width * window.height * C];
    for (row, y) in out.chunks_exact_mut(window.width * C).zip(window.rows()) {
        let Some(sy) = ys[y] else { continue };
        for (px, x) in row.chunks_exact_mut(C).zip(window.cols()) {
            if let Some(sx) = xs[x] {
                px.copy_from_slice(&src[(sy * width + sx) * C..(sy * width + sx + 1) * C]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_interpolating() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(-1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert!((bicubic(0.5) - 0.5625).abs() < 1e-12);
        assert!((bicubic(1.5) + 0.0625).abs() < 1e-12);
    }

    #[test]
    fn same_size_is_identity() {
        let src: Vec<u8> = (0..5 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
        let w = Window { x: 0, y: 0, width: 5, height: 4 };
        assert_eq!(bicubic_u8::<4>(&src, 5, 4, 5, 4, w), src);
    }

    #[test]
    fn window_equals_crop_of_full_resize() {
        let (w, h) = (37, 23);
        let src: Vec<u8> = (0..w * h * 2).map(|i| ((i * 7919) % 251) as u8).collect();
        let (ow, oh) = (20, 51);
        let full = bicubic_u8::<2>(&src, w, h, ow, oh, Window { x: 0, y: 0, width: ow, height: oh });
        let win = Window { x: 3, y: 17, width: 11, height: 20 };
        let part = bicubic_u8::<2>(&src, w, h, ow, oh, win);
        for y in 0..win.height {
            let a = &full[((y + win.y) * ow + win.x) * 2..((y + win.y) * ow + win.x + win.width) * 2];
            assert_eq!(a, &part[y * win.width * 2..(y + 1) * win.width * 2], "row {y}");
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 9 * 13];
        let out = bicubic_u8::<1>(&src, 9, 13, 4, 30, Window { x: 0, y: 0, width: 4, height: 30 });
        assert!(out.iter().all(|&v| v == 200), "{out:?}");
        let src16 = vec![40000u16; 9 * 13];
        let out16 = bicubic_u16(&src16, 9, 13, 4, 30, Window { x: 0, y: 0, width: 4, height: 30 });
        assert!(out16.iter().all(|&v| v == 40000), "{out16:?}");
    }

    #[test]
    fn u16_store_clips_bytes_like_pillow() {
        assert_eq!(store_u16(-3.0), 0);
        assert_eq!(store_u16(1234.4), 1234);
        assert_eq!(store_u16(1234.5), 1235);
        // 65600 = 0x10040: high byte clips to 255, low byte stays 0x40
        assert_eq!(store_u16(65600.0), 0xFF40);
    }

    #[test]
    fn nearest_picks_centres() {
        assert_eq!(nearest_map(4, 2), vec![Some(1), Some(3)]);
        assert_eq!(nearest_map(2, 4), vec![Some(0), Some(0), Some(1), Some(1)]);
    }
}
