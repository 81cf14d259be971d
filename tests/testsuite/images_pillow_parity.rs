//! CLIP preprocessing against Pillow + torchvision in the project's venv.
//!
//! `images_pillow_reference.py` writes images of odd sizes and modes and what
//! Pillow + torchvision make of them; here toe-pipe decodes the same files
//! and must give the same pixels (within 1/255 before normalisation, the
//! issue's bound; in practice they are equal) and CLIP's normalised tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array3, ArrayD};
use ndarray_npy::read_npy;
use toe_pipe::images::{decode, ClipPreprocess, DecodeError, RgbConversion};

use crate::images_support;
use images_support::run_python;

const SIZES: [usize; 3] = [224, 32, 7];

struct Reference {
    images: PathBuf,
    refs: PathBuf,
    manifest: BTreeMap<String, serde_json::Value>,
}

/// The reference files, made once for all tests of this file.
fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(make_reference)
}

fn make_reference() -> Reference {
    // A fixed folder, emptied first: a static is never dropped, so a temp
    // dir would be left behind by every run.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("images_pillow_parity");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("reference folder");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images_pillow_reference.py");
    let mut args = vec![script.into_os_string(), dir.clone().into_os_string()];
    args.extend(SIZES.iter().map(|n| n.to_string().into()));
    run_python(&args);
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    Reference {
        images: dir.join("images"),
        refs: dir.join("ref"),
        manifest: serde_json::from_str(&manifest).expect("manifest json"),
    }
}

/// Formats whose decoder is not Pillow's own and may legitimately differ.
fn pixel_exact_decoder(name: &str) -> bool {
    !name.ends_with(".webp") || name.contains("lossless")
}

/// Palette BMP/TIFF files: the `image` crate expands the palette, so the
/// image is RGB, not P; that changes nothing when converting on load (Pillow
/// converts P to RGB first too) but CLIP's transform alone would resize P
/// nearest-neighbour.
fn expanded_palette(name: &str) -> bool {
    name.contains("palette") && !name.ends_with(".png")
}

/// Lossless files: decoded samples are the file's, so everything after is
/// our arithmetic against Pillow's and must match exactly. (JPEG goes
/// through the system libjpeg-turbo, which may be another release than
/// Pillow's bundled one; the bound of 1/255 applies.)
fn must_be_exact(name: &str) -> bool {
    pixel_exact_decoder(name) && !name.ends_with(".jpg")
}

/// Files Pillow opens that the `image` crate cannot decode: a clear error.
fn unsupported(name: &str) -> bool {
    name == "tiff_palette_90x70.tif"
}

#[test]
fn unsupported_files_are_a_clear_error() {
    let r = reference();
    for name in r.manifest.keys().filter(|n| unsupported(n)) {
        let bytes = std::fs::read(r.images.join(name)).expect("read image");
        let e = decode(&bytes).expect_err(name);
        assert!(matches!(e, DecodeError::Unsupported(_)), "{name}: {e}");
    }
}

#[test]
fn clip_preprocess_matches_pillow_and_torchvision() {
    let r = reference();
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let mut differing = 0usize;
    for (name, meta) in r.manifest.iter().filter(|(n, _)| !unsupported(n)) {
        let bytes = std::fs::read(r.images.join(name)).expect("read image");
        let img = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mode = meta["mode"].as_str().unwrap();
        let is_jpeg_or_png = name.ends_with(".png") || name.ends_with(".jpg");
        if is_jpeg_or_png && img.mode.pillow_name() != mode {
            failures.push(format!("{name}: mode {} but Pillow opens {mode}", img.mode.pillow_name()));
        }
        assert_eq!(img.width as u64, meta["width"].as_u64().unwrap(), "{name} width");
        assert_eq!(img.height as u64, meta["height"].as_u64().unwrap(), "{name} height");
        for n in SIZES {
            for (conversion, tag) in [(RgbConversion::OnLoad, "on_load"), (RgbConversion::InTransform, "in_transform")]
            {
                let expected: Array3<u8> =
                    read_npy(r.refs.join(format!("{name}.{tag}.{n}.npy"))).expect("reference npy");
                let preprocess = ClipPreprocess::new(n, conversion);
                let got = preprocess.rgb(&img);
                // Decoding only what the crop needs (JPEG) changes nothing.
                let part = preprocess.decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(preprocess.rgb(&part), got, "{name} {tag} {n}: partial decode");
                let expected = expected.as_slice().expect("contiguous");
                assert_eq!(got.len(), expected.len(), "{name} {tag} {n}: size");
                let diffs: Vec<i32> = got.iter().zip(expected).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
                let max = diffs.iter().copied().max().unwrap_or(0);
                let count = diffs.iter().filter(|&&d| d > 0).count();
                compared += 1;
                if count > 0 {
                    differing += 1;
                    println!("{name} {tag} n_px={n}: {count} samples differ, max {max}");
                }
                let exempt = expanded_palette(name) && conversion == RgbConversion::InTransform;
                if !exempt && ((max > 1 && pixel_exact_decoder(name)) || (max > 0 && must_be_exact(name))) {
                    failures.push(format!("{name} {tag} n_px={n}: max difference {max}/255"));
                }
            }
        }
    }
    println!("{compared} image x size x conversion cases, {differing} with any difference");
    assert!(
        failures.is_empty(),
        "differences beyond 1/255 (any difference for lossless files):\n{}",
        failures.join("\n")
    );
}

#[test]
fn normalised_tensor_matches_clip_transform() {
    let r = reference();
    for name in r.manifest.keys().filter(|n| !unsupported(n)) {
        let bytes = std::fs::read(r.images.join(name)).expect("read image");
        let img = decode(&bytes).expect("decode");
        for n in SIZES {
            let expected: ArrayD<f32> = read_npy(r.refs.join(format!("{name}.tensor.{n}.npy"))).expect("tensor npy");
            assert_eq!(expected.shape(), &[3, n, n]);
            let p = ClipPreprocess::new(n, RgbConversion::OnLoad);
            let mut got = vec![0f32; p.tensor_len()];
            p.write_tensor(&img, &mut got);
            let max = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Equal pixels give equal floats: ToTensor and Normalize are f32
            // divisions in the same order.
            let bound = if pixel_exact_decoder(name) { 1e-6 } else { 0.02 };
            assert!(max <= bound, "{name} n_px={n}: max |difference| {max}");
        }
    }
}
