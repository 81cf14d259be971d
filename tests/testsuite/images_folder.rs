//! ImageFolder listing against torchvision's `ImageFolder` (venv Python) and
//! its error messages.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use toe_pipe::images::{FolderOptions, ImageFolder, ImagesError};

use crate::images_support;
use images_support::run_python;

fn touch(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"not decoded by the listing").unwrap();
}

/// torchvision's (classes, [(relative path, label)]) for `root`.
fn torchvision_listing(root: &Path) -> (Vec<String>, Vec<(String, i64)>) {
    let script = r#"
import json, os, sys
from torchvision.datasets import ImageFolder
root = sys.argv[1]
ds = ImageFolder(root, loader=lambda p: p, allow_empty=True)
print(json.dumps({"classes": ds.classes,
                  "samples": [[os.path.relpath(p, root), t] for p, t in ds.samples]}))
"#;
    let stdout = run_python(&[OsStr::new("-c"), OsStr::new(script), root.as_os_str()]);
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let classes = v["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_str().unwrap().to_string(), s[1].as_i64().unwrap()))
        .collect();
    (classes, samples)
}

#[test]
fn listing_matches_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in [
        "zebra/b.jpg",
        "zebra/a.JPG",
        "zebra/c.jpeg",
        "zebra/notes.txt",
        "zebra/.hidden.png",
        "zebra/Capital.png",
        "zebra/sub/x.png",
        "zebra/sub b/y.png",
        "zebra/sub-c/z.webp",
        "zebra/sub.d/w.tif",
        "zebra/sub/deeper/v.bmp",
        "Apple/1.PNG",
        "Apple/10.png",
        "Apple/2.png",
        "Apple/img.Tiff",
        "Apple/img.pgm",
        "Apple/img.ppm",
        "Apple/img.gif",
        "apple/é.jpg",
        "apple/e.jpg",
        "apple/z.jpg",
        "b-c/x.jpg",
        "b c/x.jpg",
        "b_c/x.jpg",
    ] {
        touch(root, rel);
    }
    fs::create_dir_all(root.join("empty_class")).unwrap();
    touch(root, "top_level_file.jpg"); // not in a class folder: ignored
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.join("zebra/sub"), root.join("apple/linked")).unwrap();
        std::os::unix::fs::symlink(root.join("b_c"), root.join("linked_class")).unwrap();
        // a dangling link is listed as a file (and fails later, when read)
        std::os::unix::fs::symlink(root.join("nowhere.jpg"), root.join("apple/dangling.jpg")).unwrap();
    }

    let (classes, samples) = torchvision_listing(root);
    let folder = ImageFolder::open_with(root, &FolderOptions { allow_empty_classes: true }).unwrap();
    assert_eq!(folder.classes(), classes.as_slice());
    let ours: Vec<(String, i64)> = folder
        .samples()
        .iter()
        .map(|s| (s.path.strip_prefix(root).unwrap().to_string_lossy().into_owned(), s.label))
        .collect();
    assert_eq!(ours, samples);
    assert!(samples.len() > 20, "the fixture should list many files");
}

#[test]
fn errors_name_the_folder_and_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = ImageFolder::open(&missing).unwrap_err();
    assert!(matches!(e, ImagesError::RootMissing { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("nope") && text.contains("<root>/<class>/<image>"), "{text}");

    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    touch(&empty, "loose.jpg");
    let e = ImageFolder::open(&empty).unwrap_err();
    assert!(matches!(e, ImagesError::NoClassFolders { .. }), "{e}");
    assert!(e.to_string().contains("empty"), "{e}");

    let file = dir.path().join("file.jpg");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(ImageFolder::open(&file).unwrap_err(), ImagesError::RootNotADirectory { .. }));

    let partial = dir.path().join("partial");
    touch(&partial, "cat/a.jpg");
    touch(&partial, "dog/readme.txt");
    fs::create_dir_all(partial.join("emu")).unwrap();
    let e = ImageFolder::open(&partial).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("dog, emu") && text.contains(".jpg"), "{text}");
    let ok = ImageFolder::open_with(&partial, &FolderOptions { allow_empty_classes: true }).unwrap();
    assert_eq!(ok.classes(), ["cat", "dog", "emu"]);
    assert_eq!(ok.len(), 1);
}
