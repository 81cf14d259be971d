//! Decoding edge cases: broken, truncated and mislabelled files behave as
//! with Pillow (an error, or the image when Pillow opens it).

use std::io::Cursor;

use image::{ImageBuffer, ImageFormat, Rgb};
use toe_pipe::images::{decode, DecodeError, Mode};

fn encoded(format: ImageFormat) -> Vec<u8> {
    let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn truncated_jpeg_is_an_error_like_pillow() {
    let jpeg = encoded(ImageFormat::Jpeg);
    assert_eq!(decode(&jpeg).unwrap().mode, Mode::Rgb);
    // Pillow raises "image file is truncated" for a cut file, and even when
    // only the end-of-image marker is missing.
    for cut in [jpeg.len() * 6 / 10, jpeg.len() - 2] {
        let e = decode(&jpeg[..cut]).unwrap_err();
        assert!(matches!(e, DecodeError::Jpeg(_)), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}

#[test]
fn truncated_png_is_an_error() {
    let png = encoded(ImageFormat::Png);
    let e = decode(&png[..png.len() * 6 / 10]).unwrap_err();
    assert!(matches!(e, DecodeError::Png(_)), "{e}");
}

#[test]
fn garbage_and_empty_files_are_errors() {
    assert!(decode(b"").is_err());
    assert!(decode(b"GIF89a not really").is_err());
    let e = decode(b"\xFF\xD8\xFF\xE0 broken jpeg header").unwrap_err();
    assert!(matches!(e, DecodeError::Jpeg(_)), "{e}");
    assert!(decode(&[0u8; 100]).is_err());
}

#[test]
fn format_comes_from_the_content_not_the_name() {
    // Callers pass bytes; a PNG named .jpg still decodes as a PNG (as Pillow).
    let png = encoded(ImageFormat::Png);
    let img = decode(&png).unwrap();
    assert_eq!((img.mode, img.width, img.height), (Mode::Rgb, 64, 48));
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    // Same data, but the frame header claims 30000 x 30000 pixels.
    let mut jpeg = encoded(ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0 marker");
    // FF C0, length (2 bytes), precision (1), height (2), width (2)
    jpeg[sof + 5..sof + 7].copy_from_slice(&30000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&30000u16.to_be_bytes());
    let e = decode(&jpeg).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge(30000, 30000)), "{e}");
    assert!(e.to_string().contains("decompression bomb"), "{e}");
}
