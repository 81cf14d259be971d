//! Parallel batches: order, labels, tensor contents, unreadable files and
//! bounded prefetch.

use std::fs;
use std::path::Path;
use std::time::Duration;

use image::{ImageBuffer, Rgb};
use toe_pipe::images::{load_image, BatchOptions, Batches, ClipPreprocess, ImageFolder, ImagesError, RgbConversion};

/// Writes `count` images per class (PNG and JPEG, assorted sizes).
fn make_folder(root: &Path, classes: &[&str], count: usize) {
    for (c, class) in classes.iter().enumerate() {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..count {
            let (w, h) = (20 + 7 * i as u32 + c as u32, 15 + 5 * ((i + c) % 4) as u32);
            let img = ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([(x * 9 + c as u32 * 40) as u8, (y * 13 + i as u32 * 20) as u8, ((x ^ y) * 5) as u8])
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(root.join(class).join(format!("{i:02}.{ext}"))).unwrap();
        }
    }
}

fn options(batch_size: usize, n_px: usize) -> BatchOptions {
    BatchOptions { batch_size, n_px, threads: 2, ..BatchOptions::default() }
}

#[test]
fn batches_keep_order_labels_and_pixels() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), &["ant", "bee", "cow"], 5);
    let folder = ImageFolder::open(dir.path()).unwrap();
    let batches: Vec<_> = folder.batches(options(4, 24)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.labels.len()).collect::<Vec<_>>(), [4, 4, 4, 3]);
    let labels: Vec<i64> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, folder.samples().iter().map(|s| s.label).collect::<Vec<_>>());
    let paths: Vec<_> = batches.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(paths, folder.samples().iter().map(|s| s.path.clone()).collect::<Vec<_>>());

    let preprocess = ClipPreprocess::new(24, RgbConversion::OnLoad);
    for batch in &batches {
        assert_eq!(batch.images.size(), [batch.labels.len() as i64, 3, 24, 24]);
        assert_eq!(batch.images.kind(), tch::Kind::Float);
        for (i, path) in batch.paths.iter().enumerate() {
            let mut expected = vec![0f32; preprocess.tensor_len()];
            preprocess.write_tensor(&load_image(path).unwrap(), &mut expected);
            let got = Vec::<f32>::try_from(batch.images.get(i as i64).flatten(0, -1)).unwrap();
            assert_eq!(got, expected, "{}", path.display());
        }
    }
}

#[test]
fn unreadable_file_is_an_error_naming_it_or_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), &["ant", "bee"], 3);
    let bad = dir.path().join("bee/01b_broken.jpg");
    fs::write(&bad, b"\xFF\xD8\xFF\xE0 this is not really a jpeg").unwrap();
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.len(), 7);

    let mut it = Batches::new(folder.samples().to_vec(), options(2, 16)).unwrap();
    let mut seen = 0;
    let error = loop {
        match it.next().expect("an error before the end") {
            Ok(b) => seen += b.labels.len(),
            Err(e) => break e,
        }
    };
    assert!(matches!(error, ImagesError::Decode { .. }), "{error}");
    assert!(error.to_string().contains("01b_broken.jpg"), "{error}");
    assert!(it.next().is_none(), "nothing after the error");
    assert!(seen < 7);

    let mut opts = options(2, 16);
    opts.skip_unreadable = true;
    let mut it = Batches::new(folder.samples().to_vec(), opts).unwrap();
    let kept: Vec<_> = it.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    let paths: Vec<_> = kept.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(paths.len(), 6);
    assert!(!paths.contains(&bad));
    let labels: Vec<i64> = kept.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
    for b in &kept {
        assert_eq!(b.images.size()[0], b.labels.len() as i64);
    }
    let skipped = it.skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, bad);
}

#[test]
fn producer_stays_within_prefetch_and_stops_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), &["ant"], 12);
    let folder = ImageFolder::open(dir.path()).unwrap();
    let mut opts = options(1, 16);
    opts.prefetch = 1;
    let mut it = Batches::new(folder.samples().to_vec(), opts).unwrap();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.labels.len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    // consumed 1, queued 1, built and waiting to be queued 1
    assert!(it.built() <= 3, "producer ran ahead: {} built", it.built());
    drop(it); // must not hang
}

#[test]
fn zero_batch_size_is_rejected() {
    let e = Batches::new(Vec::new(), options(0, 16)).err().expect("an error");
    assert!(e.to_string().contains("batch_size"), "{e}");
}
