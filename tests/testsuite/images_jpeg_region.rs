//! Partial JPEG decoding (only the rows and columns a centre crop needs)
//! must give the pixels of a full decode inside the region.

use std::ffi::OsStr;
use std::path::Path;

use toe_pipe::images::jpeg::{decode, decode_region, JpegPixels};
use toe_pipe::images::pillow_resize::Window;
use toe_pipe::images::ClipPreprocess;
use toe_pipe::images::RgbConversion;

use crate::images_support;
use images_support::run_python;

const MAKE_JPEGS: &str = r#"
import sys, numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.default_rng(5)
def photo(h, w):
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([128 + 100*np.sin(x/9.0)*np.cos(y/13.0), 128 + 90*np.sin((x+y)/17.0), 128 + 80*np.cos(x/5.0 - y/7.0)], -1)
    return np.clip(a + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
for w, h in [(500, 375), (375, 500), (333, 251), (641, 479), (17, 9), (1, 1), (16, 300), (300, 16), (225, 225)]:
    for sub, tag in [(2, "420"), (1, "422"), (0, "444"), ("4:1:1", "411")]:
        Image.fromarray(photo(h, w)).save(f"{out}/{tag}_{w}x{h}.jpg", quality=85, subsampling=sub)
    Image.fromarray(photo(h, w)).save(f"{out}/prog_{w}x{h}.jpg", quality=85, progressive=True)
    Image.fromarray(photo(h, w)).convert("L").save(f"{out}/grey_{w}x{h}.jpg", quality=85)
    Image.fromarray(photo(h, w)).convert("CMYK").save(f"{out}/cmyk_{w}x{h}.jpg", quality=85)
    Image.fromarray(photo(h, w)).save(f"{out}/restart_{w}x{h}.jpg", quality=85, restart_marker_blocks=3)
"#;

fn make_jpegs(dir: &Path) {
    run_python(&[OsStr::new("-c"), OsStr::new(MAKE_JPEGS), dir.as_os_str()]);
}

fn bytes_per_pixel(p: JpegPixels) -> usize {
    match p {
        JpegPixels::Grey => 1,
        _ => 4,
    }
}

#[test]
fn region_pixels_equal_full_decode() {
    let dir = tempfile::tempdir().unwrap();
    make_jpegs(dir.path());
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 50, "{} files", files.len());
    let mut seed = 1u64;
    let mut next = |bound: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % bound.max(1)
    };
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let full = decode(&bytes).unwrap();
        let (w, h) = (full.width, full.height);
        let mut regions: Vec<Window> =
            [224, 32, 7].iter().map(|&n| ClipPreprocess::new(n, RgbConversion::OnLoad).source_window(w, h)).collect();
        for _ in 0..6 {
            let (x, y) = (next(w), next(h));
            regions.push(Window { x, y, width: 1 + next(w - x), height: 1 + next(h - y) });
        }
        for region in regions {
            let part = decode_region(&bytes, |_, _| Some(region)).unwrap();
            assert_eq!(part.decoded, region);
            let bpp = bytes_per_pixel(full.pixels);
            for y in region.y..region.y + region.height {
                let range = (y * w + region.x) * bpp..(y * w + region.x + region.width) * bpp;
                assert_eq!(
                    &part.data[range.clone()],
                    &full.data[range],
                    "{} region {region:?} row {y}",
                    path.display()
                );
            }
        }
    }
}
