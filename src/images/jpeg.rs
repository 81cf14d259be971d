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

use super::pillow_resize::Window;

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
    fn toe_jpeg_open(data: *const c_uchar, size: c_ulong, info: *mut ToeJpegInfo, message: *mut c_char)
        -> *mut ToeJpeg;
    #[allow(clippy::too_many_arguments)]
    fn toe_jpeg_read_region(
        handle: *mut ToeJpeg,
        dst: *mut c_uchar,
        stride: c_ulong,
        x0: c_ulong,
        y0: c_ulong,
        width: c_ulong,
        height: c_ulong,
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
    /// The pixels that were decoded (the whole image unless a region was
    /// asked for); the others are 0.
    pub decoded: Window,
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
    JpegDecoder::open(bytes)?.decode(None)
}

/// Decodes only the pixels in the window that `region(width, height)`
/// returns (`None`: all); see [`JpegDecoder::decode`].
pub fn decode_region(bytes: &[u8], region: impl FnOnce(usize, usize) -> Option<Window>) -> Result<JpegImage, String> {
    let decoder = JpegDecoder::open(bytes)?;
    let window = region(decoder.width(), decoder.height());
    decoder.decode(window)
}

/// A JPEG file whose header has been read.
pub struct JpegDecoder<'a> {
    handle: Handle,
    info: ToeJpegInfo,
    pixels: JpegPixels,
    // libjpeg reads from these bytes until the handle is closed
    _bytes: &'a [u8],
}

impl<'a> JpegDecoder<'a> {
    /// Reads the header. The error is libjpeg's message.
    pub fn open(bytes: &'a [u8]) -> Result<JpegDecoder<'a>, String> {
        let mut info = ToeJpegInfo::default();
        let mut message = [0 as c_char; MESSAGE_LEN];
        // SAFETY: `bytes` outlives the handle (both live in the returned
        // value), `info` and `message` are valid for writes of their sizes.
        let handle = unsafe { toe_jpeg_open(bytes.as_ptr(), bytes.len() as c_ulong, &mut info, message.as_mut_ptr()) };
        if handle.is_null() {
            return Err(message_text(&message));
        }
        let handle = Handle(handle);
        let pixels = match (info.components, info.pixel_bytes) {
            (1, 1) => JpegPixels::Grey,
            (3, 4) => JpegPixels::Rgbx,
            (4, 4) => JpegPixels::Cmyk,
            (c, b) => return Err(format!("unexpected JPEG layout: {c} components, {b} bytes")),
        };
        Ok(JpegDecoder { handle, info, pixels, _bytes: bytes })
    }

    pub fn width(&self) -> usize {
        self.info.width as usize
    }

    pub fn height(&self) -> usize {
        self.info.height as usize
    }

    pub fn pixels(&self) -> JpegPixels {
        self.pixels
    }

    /// Decodes the pixels in `region` (all when `None` or when it does not
    /// fit the image): rows outside are skipped and columns outside mostly
    /// not transformed (libjpeg-turbo's partial decoding). The buffer has
    /// the whole image's size; the decoded pixels equal a full decode's.
    pub fn decode(self, region: Option<Window>) -> Result<JpegImage, String> {
        self.decode_into(region, Vec::new())
    }

    /// [`JpegDecoder::decode`] into `buffer`'s memory (resized as needed),
    /// for callers that decode many images.
    pub fn decode_into(self, region: Option<Window>, mut data: Vec<u8>) -> Result<JpegImage, String> {
        let (width, height) = (self.width(), self.height());
        let decoded = match region {
            Some(w) if w.x + w.width <= width && w.y + w.height <= height => w,
            _ => Window::whole(width, height),
        };
        // Fancy upsampling treats the edges of a partial-width decode as
        // image edges: decode one more column on each side than needed.
        let x0 = decoded.x.saturating_sub(1);
        let x1 = (decoded.x + decoded.width + 1).min(width);
        let stride = width * self.info.pixel_bytes as usize;
        data.clear();
        data.resize(stride * height, 0);
        let mut message = [0 as c_char; MESSAGE_LEN];
        // SAFETY: `data` holds `height` rows of `stride` bytes, the whole
        // image in the output format chosen in toe_jpeg_open; the shim writes
        // inside it. The handle is used once (decode takes `self`).
        let status = unsafe {
            toe_jpeg_read_region(
                self.handle.0,
                data.as_mut_ptr(),
                stride as c_ulong,
                x0 as c_ulong,
                decoded.y as c_ulong,
                (x1 - x0) as c_ulong,
                decoded.height as c_ulong,
                message.as_mut_ptr(),
            )
        };
        if status != 0 {
            return Err(message_text(&message));
        }
        Ok(JpegImage { width, height, pixels: self.pixels, data, decoded, saw_adobe: self.info.saw_adobe != 0 })
    }
}

/// Closes the libjpeg handle on every path out of [`decode`].
struct Handle(*mut ToeJpeg);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from toe_jpeg_open and is closed once.
        unsafe { toe_jpeg_close(self.0) }
    }
}
