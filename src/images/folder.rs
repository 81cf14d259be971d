//! torchvision's `ImageFolder` layout: `root/<class>/**/<image>`.
//!
//! Same samples in the same order as `torchvision.datasets.ImageFolder`:
//! class folders sorted by name give labels 0, 1, ...; within a class,
//! folders are walked recursively (following symlinks) and visited in the
//! order of their sorted paths, files sorted by name; a file counts when its
//! name ends with one of torchvision's `IMG_EXTENSIONS` (any case). A class
//! without any image is an error unless allowed, as torchvision's
//! `allow_empty`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{BatchOptions, Batches, ImagesError};

/// torchvision's `IMG_EXTENSIONS`.
pub const IMG_EXTENSIONS: [&str; 9] = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];

/// torchvision's `has_file_allowed_extension`: a case-insensitive suffix test.
pub fn has_image_extension(name: &str) -> bool {
    let lower = name.to_lowercase();
    IMG_EXTENSIONS.iter().any(|ext| lower.ends_with(ext))
}

/// One image and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: i64,
}

/// Options of [`ImageFolder::open_with`].
#[derive(Debug, Clone, Default)]
pub struct FolderOptions {
    /// Accept class folders without any image (torchvision's `allow_empty`).
    pub allow_empty_classes: bool,
}

/// An image dataset in ImageFolder layout.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<Sample>,
}

fn io_error(path: &Path, source: std::io::Error) -> ImagesError {
    ImagesError::Io { path: path.to_path_buf(), source }
}

/// Entries of a directory split into sub-directories (following symlinks)
/// and everything else, as `os.walk` does.
fn list_dir(dir: &Path) -> Result<(Vec<OsString>, Vec<OsString>), ImagesError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        // The entry's type needs no stat (as Python's scandir); symlinks are
        // followed, and a broken link counts as a file.
        let kind = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
        let is_dir =
            kind.is_dir() || (kind.is_symlink() && fs::metadata(entry.path()).map(|m| m.is_dir()).unwrap_or(false));
        if is_dir {
            dirs.push(entry.file_name());
        } else {
            files.push(entry.file_name());
        }
    }
    Ok((dirs, files))
}

/// Python's sort order for str: by code point, which for UTF-8 names is the
/// byte order.
fn sort_names(names: &mut [OsString]) {
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
}

impl ImageFolder {
    /// Reads the layout under `root` (torchvision's defaults).
    pub fn open(root: impl AsRef<Path>) -> Result<ImageFolder, ImagesError> {
        ImageFolder::open_with(root, &FolderOptions::default())
    }

    pub fn open_with(root: impl AsRef<Path>, options: &FolderOptions) -> Result<ImageFolder, ImagesError> {
        let root = root.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ImagesError::RootMissing { root }),
            Err(e) => return Err(io_error(&root, e)),
            Ok(m) if !m.is_dir() => return Err(ImagesError::RootNotADirectory { root }),
            Ok(_) => {}
        }
        let (mut class_dirs, _) = list_dir(&root)?;
        if class_dirs.is_empty() {
            return Err(ImagesError::NoClassFolders { root });
        }
        sort_names(&mut class_dirs);

        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (label, class) in class_dirs.iter().enumerate() {
            let before = samples.len();
            for path in walk_sorted(&root.join(class))? {
                samples.push(Sample { path, label: label as i64 });
            }
            if samples.len() == before {
                empty.push(class.to_string_lossy().into_owned());
            }
        }
        if !empty.is_empty() && !options.allow_empty_classes {
            return Err(ImagesError::EmptyClasses { root, classes: empty });
        }
        let classes = class_dirs.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        Ok(ImageFolder { root, classes, samples })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names; a sample's label indexes this list.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// All samples as CLIP-preprocessed batches, in order.
    pub fn batches(&self, options: BatchOptions) -> Result<Batches, ImagesError> {
        Batches::new(self.samples.clone(), options)
    }
}

/// The image files under `class_dir`, in the order of
/// `for root, _, files in sorted(os.walk(class_dir, followlinks=True)):
/// for f in sorted(files)`. Folders reached twice through symlinks (a cycle)
/// are walked once.
fn walk_sorted(class_dir: &Path) -> Result<Vec<PathBuf>, ImagesError> {
    // (path as bytes for sorting, path, image files)
    let mut folders: Vec<(Vec<u8>, PathBuf, Vec<OsString>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![class_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let real = fs::canonicalize(&dir).map_err(|e| io_error(&dir, e))?;
        if !seen.insert(real) {
            continue;
        }
        let (dirs, files) = list_dir(&dir)?;
        let mut images: Vec<OsString> =
            files.into_iter().filter(|f| has_image_extension(&f.to_string_lossy())).collect();
        sort_names(&mut images);
        stack.extend(dirs.iter().map(|d| dir.join(d)));
        folders.push((dir.as_os_str().as_encoded_bytes().to_vec(), dir, images));
    }
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(folders.into_iter().flat_map(|(_, dir, files)| files.into_iter().map(move |f| dir.join(f))).collect())
}
