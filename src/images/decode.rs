//! Decoding image files into what Pillow's `Image.open` would hold: the same
//! mode (L, LA, P, RGB, RGBA, CMYK, 1, I;16) and the same samples.
//!
//! The mode matters because CLIP's transform resizes the image in its
//! original mode (nearest for P and 1, premultiplied alpha for LA and RGBA,
//! 16-bit arithmetic for I;16) before converting to RGB.
//!
//! * JPEG: libjpeg-turbo, as Pillow (see `jpeg.rs`). CMYK is stored inverted
//!   (Pillow always assumes Adobe's convention).
//! * PNG: the `png` crate without colour expansion, mapped to Pillow's modes
//!   (PngImagePlugin's table): 1-bit grey is `1`; 2- and 4-bit grey are `L`
//!   scaled to 0..=255; 16-bit grey is `I;16`; 16-bit colour keeps the high
//!   byte; palettes stay `P`; tRNS does not change the pixels.
//! * Other formats (BMP, TIFF, WebP, PPM/PGM) go through the `image` crate
//!   and are mapped to L, LA, RGB, RGBA or I;16 by their decoded layout.
//!   Palette BMP files therefore become RGB: the same pixels as Pillow's
//!   when converting to RGB on load (the default), not when CLIP's transform
//!   alone resizes them (Pillow keeps them `P`, nearest-neighbour). Lossy
//!   WebP is decoded by `image-webp`, not libwebp (equal on our test image,
//!   not guaranteed). Palette TIFFs are not supported by the `tiff` crate.
//!
//! Like Pillow's `Image.open` (and torchvision), EXIF orientation is not
//! applied.

use std::io::Cursor;

use super::jpeg::{self, JpegPixels};
use super::pillow_resize::Window;

/// Pillow refuses images above twice `Image.MAX_IMAGE_PIXELS`
/// (DecompressionBombError); so do we, before allocating their pixels.
pub const MAX_PIXELS: usize = 2 * 89_478_485;

/// Pillow image modes that CLIP preprocessing distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 1-bit, stored as 0 or 255 per pixel (one byte).
    Bilevel,
    /// 8-bit grey.
    L,
    /// 8-bit grey + alpha (two bytes per pixel).
    LA,
    /// 8-bit palette indices, with a 256-entry RGB palette.
    P,
    /// 8-bit RGB, stored as four bytes per pixel (R, G, B, unused) like Pillow.
    Rgb,
    /// 8-bit RGB + straight (not premultiplied) alpha.
    Rgba,
    /// 8-bit C, M, Y, K.
    Cmyk,
    /// 16-bit unsigned grey (`I;16`), stored in [`Samples::U16`].
    I16,
}

impl Mode {
    /// Bytes (or 16-bit samples) per pixel in our buffers.
    pub fn bands(self) -> usize {
        match self {
            Mode::Bilevel | Mode::L | Mode::P | Mode::I16 => 1,
            Mode::LA => 2,
            Mode::Rgb | Mode::Rgba | Mode::Cmyk => 4,
        }
    }

    /// Pillow's name for the mode.
    pub fn pillow_name(self) -> &'static str {
        match self {
            Mode::Bilevel => "1",
            Mode::L => "L",
            Mode::LA => "LA",
            Mode::P => "P",
            Mode::Rgb => "RGB",
            Mode::Rgba => "RGBA",
            Mode::Cmyk => "CMYK",
            Mode::I16 => "I;16",
        }
    }
}

/// Pixel samples, row-major, `mode.bands()` per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// A decoded image as Pillow holds it after `Image.open(...).load()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilImage {
    pub mode: Mode,
    pub width: usize,
    pub height: usize,
    pub samples: Samples,
    /// For [`Mode::P`]: 256 RGB entries. Entries the file does not define
    /// are Pillow's default (i, i, i).
    pub palette: Option<Vec<[u8; 3]>>,
    /// The pixels that hold decoded values: the whole image, unless it was
    /// decoded for a crop with [`decode_part`] (other pixels are then
    /// unspecified).
    pub valid: Window,
}

impl PilImage {
    /// An 8-bit image; panics if the buffer does not match the size.
    pub fn new_u8(mode: Mode, width: usize, height: usize, data: Vec<u8>) -> PilImage {
        assert_ne!(mode, Mode::I16, "I;16 holds 16-bit samples");
        assert_eq!(data.len(), width * height * mode.bands(), "buffer size for {mode:?}");
        PilImage { mode, width, height, samples: Samples::U8(data), palette: None, valid: Window::whole(width, height) }
    }

    fn new_u16(width: usize, height: usize, data: Vec<u16>) -> PilImage {
        assert_eq!(data.len(), width * height, "buffer size for I;16");
        PilImage {
            mode: Mode::I16,
            width,
            height,
            samples: Samples::U16(data),
            palette: None,
            valid: Window::whole(width, height),
        }
    }

    /// The sample memory, for reuse by [`decode_part`] (empty for `I;16`).
    pub fn into_buffer(self) -> Vec<u8> {
        match self.samples {
            Samples::U8(v) => v,
            Samples::U16(_) => Vec::new(),
        }
    }

    /// The 8-bit samples; panics for `I;16`.
    pub fn bytes(&self) -> &[u8] {
        match &self.samples {
            Samples::U8(v) => v,
            Samples::U16(_) => panic!("I;16 image has no 8-bit samples"),
        }
    }
}

/// Why a file could not be decoded (the caller adds the path).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid JPEG file: {0}")]
    Jpeg(String),
    #[error("not a valid PNG file: {0}")]
    Png(String),
    #[error("cannot decode: {0}")]
    Other(String),
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("empty image ({0}x{1})")]
    Empty(usize, usize),
    #[error("image too large: {0}x{1} is above Pillow's limit of {MAX_PIXELS} pixels (decompression bomb)")]
    TooLarge(usize, usize),
}

fn check_size(width: usize, height: usize) -> Result<(), DecodeError> {
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge(width, height));
    }
    Ok(())
}

/// Decodes an image file's bytes. The format is taken from the content, as
/// Pillow does, not from the file name.
pub fn decode(bytes: &[u8]) -> Result<PilImage, DecodeError> {
    decode_part(bytes, |_, _| None, Vec::new())
}

/// As [`decode`], for a caller that only uses the pixels in
/// `region(width, height)`: JPEG files then skip the rows and columns
/// outside it (libjpeg-turbo's partial decoding; the pixels inside are those
/// of a full decode), other formats decode everything. See
/// [`PilImage::valid`]. JPEG pixels go into `buffer`'s memory (see
/// [`PilImage::into_buffer`]; `Vec::new()` when there is none to reuse).
pub fn decode_part(
    bytes: &[u8],
    region: impl FnOnce(usize, usize) -> Option<Window>,
    buffer: Vec<u8>,
) -> Result<PilImage, DecodeError> {
    let image = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, region, buffer)?
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)?
    } else {
        decode_other(bytes)?
    };
    if image.width == 0 || image.height == 0 {
        return Err(DecodeError::Empty(image.width, image.height));
    }
    Ok(image)
}

fn decode_jpeg(
    bytes: &[u8],
    region: impl FnOnce(usize, usize) -> Option<Window>,
    buffer: Vec<u8>,
) -> Result<PilImage, DecodeError> {
    let decoder = jpeg::JpegDecoder::open(bytes).map_err(DecodeError::Jpeg)?;
    let (width, height) = (decoder.width(), decoder.height());
    check_size(width, height)?;
    let mut img = decoder.decode_into(region(width, height), buffer).map_err(DecodeError::Jpeg)?;
    let mode = match img.pixels {
        JpegPixels::Grey => Mode::L,
        JpegPixels::Rgbx => Mode::Rgb,
        JpegPixels::Cmyk => {
            // Pillow reads 4-layer JPEGs with rawmode "CMYK;I" (inverted)
            // whether or not the Adobe marker is present.
            img.data.iter_mut().for_each(|v| *v = 255 - *v);
            Mode::Cmyk
        }
    };
    Ok(PilImage { valid: img.decoded, ..PilImage::new_u8(mode, img.width, img.height, img.data) })
}

fn decode_png(bytes: &[u8]) -> Result<PilImage, DecodeError> {
    let err = |e: png::DecodingError| DecodeError::Png(e.to_string());
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(err)?;
    check_size(reader.info().width as usize, reader.info().height as usize)?;
    let size = reader.output_buffer_size().ok_or_else(|| DecodeError::Png("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    let stride = frame.line_size;
    let info = reader.info();
    let depth = frame.bit_depth as u8;
    use png::ColorType as Ct;
    let rows = || buf.chunks_exact(stride).take(height);
    // Reads a row of `bits`-bit packed samples (MSB first), `count` of them.
    fn unpack(row: &[u8], bits: u8, count: usize) -> impl Iterator<Item = u8> + '_ {
        let per_byte = 8 / bits as usize;
        let mask = ((1u16 << bits) - 1) as u8;
        (0..count).map(move |i| {
            let byte = row[i / per_byte];
            let shift = 8 - bits as usize * (i % per_byte + 1);
            (byte >> shift) & mask
        })
    }
    let image = match (frame.color_type, depth) {
        (Ct::Grayscale, 16) => {
            let data: Vec<u16> =
                rows().flat_map(|r| r[..width * 2].chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]]))).collect();
            PilImage::new_u16(width, height, data)
        }
        (Ct::Grayscale, 1) => {
            let data = rows().flat_map(|r| unpack(r, 1, width).map(|v| v * 255)).collect();
            PilImage::new_u8(Mode::Bilevel, width, height, data)
        }
        (Ct::Grayscale, bits) => {
            // L;2 and L;4 scale to the full byte range (x85, x17).
            let factor = 255 / ((1u16 << bits) - 1) as u8;
            let data = rows().flat_map(|r| unpack(r, bits, width).map(move |v| v * factor)).collect();
            PilImage::new_u8(Mode::L, width, height, data)
        }
        (Ct::Indexed, bits) => {
            let mut palette: Vec<[u8; 3]> = (0..=255u8).map(|i| [i, i, i]).collect();
            if let Some(plte) = info.palette.as_ref() {
                for (entry, rgb) in palette.iter_mut().zip(plte.chunks_exact(3)) {
                    entry.copy_from_slice(rgb);
                }
            }
            let data = rows().flat_map(|r| unpack(r, bits, width)).collect();
            let mut img = PilImage::new_u8(Mode::P, width, height, data);
            img.palette = Some(palette);
            img
        }
        (Ct::Rgb, _) | (Ct::Rgba, _) | (Ct::GrayscaleAlpha, _) => {
            let channels = frame.color_type.samples();
            let sample = depth as usize / 8; // 1 or 2 bytes; 16-bit keeps the high byte
                                             // 16-bit grey + alpha opens as RGBA in Pillow (rawmode LA;16B).
            let mode = match (frame.color_type, sample) {
                (Ct::GrayscaleAlpha, 1) => Mode::LA,
                (Ct::Rgb, _) => Mode::Rgb,
                _ => Mode::Rgba,
            };
            let mut data = Vec::with_capacity(width * height * mode.bands());
            for r in rows() {
                for px in r[..width * channels * sample].chunks_exact(channels * sample) {
                    let s = |c: usize| px[c * sample];
                    match (mode, channels) {
                        (Mode::LA, _) => data.extend([s(0), s(1)]),
                        (_, 2) => data.extend([s(0), s(0), s(0), s(1)]),
                        (_, 3) => data.extend([s(0), s(1), s(2), 0]),
                        _ => data.extend([s(0), s(1), s(2), s(3)]),
                    }
                }
            }
            PilImage::new_u8(mode, width, height, data)
        }
    };
    Ok(image)
}

fn decode_other(bytes: &[u8]) -> Result<PilImage, DecodeError> {
    use image::DynamicImage as D;
    let img = image::load_from_memory(bytes).map_err(|e| match e {
        image::ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        other => DecodeError::Other(other.to_string()),
    })?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    check_size(width, height)?;
    let rgbx = |rgb: &[u8]| -> Vec<u8> { rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 0]).collect() };
    let high = |v: &[u16]| -> Vec<u8> { v.iter().map(|s| (s >> 8) as u8).collect() };
    Ok(match img {
        D::ImageLuma8(b) => PilImage::new_u8(Mode::L, width, height, b.into_raw()),
        D::ImageLumaA8(b) => PilImage::new_u8(Mode::LA, width, height, b.into_raw()),
        D::ImageRgb8(b) => PilImage::new_u8(Mode::Rgb, width, height, rgbx(b.as_raw())),
        D::ImageRgba8(b) => PilImage::new_u8(Mode::Rgba, width, height, b.into_raw()),
        D::ImageLuma16(b) => PilImage::new_u16(width, height, b.into_raw()),
        D::ImageLumaA16(b) => PilImage::new_u8(Mode::LA, width, height, high(b.as_raw())),
        D::ImageRgb16(b) => PilImage::new_u8(Mode::Rgb, width, height, rgbx(&high(b.as_raw()))),
        D::ImageRgba16(b) => PilImage::new_u8(Mode::Rgba, width, height, high(b.as_raw())),
        other => {
            // Float images: Pillow has no equivalent mode for these files.
            let rgba = other.to_rgba8();
            PilImage::new_u8(Mode::Rgba, width, height, rgba.into_raw())
        }
    })
}
