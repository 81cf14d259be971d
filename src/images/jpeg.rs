//! JPEG decoding through libjpeg-turbo (the system library, via
//! `jpeg_shim.c`).
//!
//! Why not the `image` crate: its decoder (zune-jpeg) uses a different IDCT,
//! chroma upsampling and colour conversion than libjpeg-turbo, which Pillow
//! bundles. Measured on 500x375 photos-like JPEGs it differs from Pillow by up
//! to 6 levels (4:2:0), 9 levels (4:2:2) and 3 levels (4:4:4) per pixel;
//! libjpeg-turbo with its default settings (islow IDCT, fancy upsampling, as
//! Pillow uses them) gives Pillow's pixels exactly.

use std::ffi::{c_char, c_int, c_uchar, c_ulong, CStr};

const MESSAGE_LEN: usize = 256;

#[repr(C)]
struct ToeJpeg {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Default)]
struct ToeJpegInfo {
    width: c_int,
    height: c_int,
    components: c_int,
    pixel_bytes: c_int,
    saw_adobe: c_int,
}

extern "C" {
    fn toe_jpeg_open(
        data: *const c_uchar,
        size: c_ulong,
        info: *mut ToeJpegInfo,
        message: *mut c_char,
    ) -> *mut ToeJpeg;
    fn toe_jpeg_read(
        handle: *mut ToeJpeg,
        dst: *mut c_uchar,
        stride: c_ulong,
        message: *mut c_char,
    ) -> c_int;
    fn toe_jpeg_close(handle: *mut ToeJpeg);
}

/// Colour layout of decoded JPEG pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegPixels {
    /// One byte per pixel.
    Grey,
    /// Four bytes per pixel: R, G, B and an unused byte (Pillow's RGBX).
    Rgbx,
    /// Four bytes per pixel, C, M, Y, K as libjpeg returns them (Adobe files
    /// store CMYK inverted; see [`JpegImage::saw_adobe`]).
    Cmyk,
}

/// A decoded JPEG.
#[derive(Debug)]
pub struct JpegImage {
    pub width: usize,
    pub height: usize,
    pub pixels: JpegPixels,
    /// Row-major, `width * bytes_per_pixel` bytes per row.
    pub data: Vec<u8>,
    pub saw_adobe: bool,
}

fn message_text(buf: &[c_char; MESSAGE_LEN]) -> String {
    // The shim always NUL-terminates; fall back to a fixed text if not.
    let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) if !s.is_empty() => s.to_string_lossy().into_owned(),
        _ => "libjpeg reported an error without a message".to_string(),
    }
}

/// Decodes a whole JPEG file held in memory. The error is libjpeg's message.
pub fn decode(bytes: &[u8]) -> Result<JpegImage, String> {
    let mut info = ToeJpegInfo::default();
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: `bytes` outlives the handle (closed before returning), `info`
    // and `message` are valid for writes of their sizes.
    let handle = unsafe {
        toe_jpeg_open(
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            &mut info,
            message.as_mut_ptr(),
        )
    };
    if handle.is_null() {
        return Err(message_text(&message));
    }
    let guard = Handle(handle);
    let pixels = match (info.components, info.pixel_bytes) {
        (1, 1) => JpegPixels::Grey,
        (3, 4) => JpegPixels::Rgbx,
        (4, 4) => JpegPixels::Cmyk,
        (c, b) => return Err(format!("unexpected JPEG layout: {c} components, {b} bytes")),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let stride = width * info.pixel_bytes as usize;
    let mut data = vec![0u8; stride * height];
    // SAFETY: `data` holds `height` rows of `stride` bytes, which is exactly
    // what libjpeg writes for the output format chosen in toe_jpeg_open.
    let status =
        unsafe { toe_jpeg_read(guard.0, data.as_mut_ptr(), stride as c_ulong, message.as_mut_ptr()) };
    if status != 0 {
        return Err(message_text(&message));
    }
    Ok(JpegImage { width, height, pixels, data, saw_adobe: info.saw_adobe != 0 })
}

/// Closes the libjpeg handle on every path out of [`decode`].
struct Handle(*mut ToeJpeg);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from toe_jpeg_open and is closed once.
        unsafe { toe_jpeg_close(self.0) }
    }
}
