//! Pillow's mode conversions (libImaging/Convert.c) that CLIP preprocessing
//! needs: `convert("RGB")` from every mode we decode, and the premultiplied
//! alpha round trip that `Image.resize` does for LA and RGBA images.

use super::decode::{Mode, PilImage, Samples};

/// Pillow's MULDIV255: a * b / 255 rounded, in integers.
#[inline(always)]
fn muldiv255(a: u8, b: u8) -> u8 {
    let t = a as u32 * b as u32 + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's straight -> premultiplied alpha (RGBA -> RGBa, LA -> La): every
/// band but the last (alpha) times alpha / 255.
pub fn premultiply<const C: usize>(data: &mut [u8]) {
    for px in data.chunks_exact_mut(C) {
        let alpha = px[C - 1];
        for v in &mut px[..C - 1] {
            *v = muldiv255(*v, alpha);
        }
    }
}

/// Pillow's premultiplied -> straight alpha (RGBa -> RGBA, La -> LA):
/// 255 * v / alpha, floored and clipped; alpha 0 and 255 leave v as is.
pub fn unpremultiply<const C: usize>(data: &mut [u8]) {
    for px in data.chunks_exact_mut(C) {
        let alpha = px[C - 1] as u32;
        if alpha == 0 || alpha == 255 {
            continue;
        }
        for v in &mut px[..C - 1] {
            *v = ((255 * *v as u32) / alpha).min(255) as u8;
        }
    }
}

/// Pillow's cmyk2rgb.
#[inline(always)]
fn cmyk_to_rgb(px: &[u8]) -> [u8; 3] {
    let nk = 255 - px[3];
    [nk - muldiv255(px[0], nk), nk - muldiv255(px[1], nk), nk - muldiv255(px[2], nk)]
}

/// `convert("RGB")` of `pixels` (samples in `mode`'s layout), appending three
/// bytes per pixel to `out`. `palette` is needed for [`Mode::P`].
pub fn append_rgb(mode: Mode, samples: SamplesRef<'_>, palette: Option<&[[u8; 3]]>, out: &mut Vec<u8>) {
    match (mode, samples) {
        (Mode::Bilevel, SamplesRef::U8(d)) => out.extend(d.iter().flat_map(|&v| [if v != 0 { 255 } else { 0 }; 3])),
        (Mode::L, SamplesRef::U8(d)) => out.extend(d.iter().flat_map(|&v| [v; 3])),
        (Mode::LA, SamplesRef::U8(d)) => out.extend(d.chunks_exact(2).flat_map(|p| [p[0]; 3])),
        (Mode::P, SamplesRef::U8(d)) => {
            let palette = palette.expect("P image without palette");
            out.extend(d.iter().flat_map(|&i| palette[i as usize]))
        }
        (Mode::Rgb | Mode::Rgba, SamplesRef::U8(d)) => out.extend(d.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]])),
        (Mode::Cmyk, SamplesRef::U8(d)) => out.extend(d.chunks_exact(4).flat_map(cmyk_to_rgb)),
        // I16_RGB: values above 255 saturate.
        (Mode::I16, SamplesRef::U16(d)) => out.extend(d.iter().flat_map(|&v| [v.min(255) as u8; 3])),
        (mode, _) => panic!("sample type does not match mode {mode:?}"),
    }
}

/// Borrowed samples, as [`Samples`].
#[derive(Clone, Copy)]
pub enum SamplesRef<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

impl<'a> From<&'a Samples> for SamplesRef<'a> {
    fn from(s: &'a Samples) -> Self {
        match s {
            Samples::U8(v) => SamplesRef::U8(v),
            Samples::U16(v) => SamplesRef::U16(v),
        }
    }
}

/// Pillow's `image.convert("RGB")` as a whole image (mode RGB, stored RGBX).
pub fn to_rgb(img: &PilImage) -> PilImage {
    if img.mode == Mode::Rgb {
        return img.clone();
    }
    let mut rgb = Vec::with_capacity(img.width * img.height * 3);
    append_rgb(img.mode, (&img.samples).into(), img.palette.as_deref(), &mut rgb);
    let rgbx = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 0]).collect();
    PilImage { valid: img.valid, ..PilImage::new_u8(Mode::Rgb, img.width, img.height, rgbx) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muldiv255_matches_rounded_division() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                let exact = (a * b) as f64 / 255.0;
                assert_eq!(muldiv255(a as u8, b as u8) as f64, exact.round(), "{a} {b}");
            }
        }
    }

    #[test]
    fn premultiply_round_trip_keeps_opaque_and_transparent() {
        let mut px = [10, 20, 30, 255, 10, 20, 30, 0, 200, 100, 50, 128];
        premultiply::<4>(&mut px);
        assert_eq!(&px[..8], &[10, 20, 30, 255, 0, 0, 0, 0]);
        assert_eq!(&px[8..], &[100, 50, 25, 128]);
        unpremultiply::<4>(&mut px);
        assert_eq!(&px[8..], &[199, 99, 49, 128]);
    }

    #[test]
    fn cmyk_white_and_black() {
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[255, 0, 0, 0]), [0, 255, 255]);
    }
}
