//! Decode + CLIP-preprocess image files in parallel into model-ready batches.
//!
//! A producer thread walks the samples in order, one batch at a time; the
//! images of a batch are decoded and preprocessed by a rayon pool straight
//! into the batch tensor's memory. Finished batches wait in a bounded queue
//! (`prefetch` batches), so memory stays at most `prefetch + 2` batches
//! (queued, being built, held by the consumer) whatever the dataset size.
//! Dropping the iterator stops the producer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rayon::prelude::*;
use tch::{Kind, Tensor};

use super::folder::Sample;
use super::{read_file, ClipPreprocess, ImagesError, RgbConversion};

/// How to batch a dataset.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Images per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Model input resolution (224 for ViT-B/16; the demo world uses small ones).
    pub n_px: usize,
    /// Where `convert("RGB")` happens (ImageFolder's loader by default).
    pub conversion: RgbConversion,
    /// Finished batches kept ready ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Decoding threads; 0 uses rayon's global pool.
    pub threads: usize,
    /// Skip files that cannot be read or decoded (counted, see
    /// [`Batches::skipped`]) instead of stopping with an error.
    pub skip_unreadable: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_size: 64,
            n_px: 224,
            conversion: RgbConversion::OnLoad,
            prefetch: 2,
            threads: 0,
            skip_unreadable: false,
        }
    }
}

/// One batch: `images` is `[B, 3, n_px, n_px]` f32 (CPU, normalised),
/// `labels[i]` and `paths[i]` belong to image `i`.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Vec<i64>,
    pub paths: Vec<PathBuf>,
}

/// A file left out because it could not be read or decoded.
#[derive(Debug, Clone)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Iterator over batches; see the module docs.
pub struct Batches {
    receiver: Option<Receiver<Result<Batch, ImagesError>>>,
    producer: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    skipped: Arc<Mutex<Vec<SkippedFile>>>,
    built: Arc<AtomicUsize>,
    total: usize,
}

impl Batches {
    /// Starts producing batches of `samples` in order.
    pub fn new(samples: Vec<Sample>, options: BatchOptions) -> Result<Batches, ImagesError> {
        if options.batch_size == 0 || options.n_px == 0 {
            return Err(ImagesError::InvalidOption(format!(
                "batch_size ({}) and n_px ({}) must be positive",
                options.batch_size, options.n_px
            )));
        }
        let pool = if options.threads > 0 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(options.threads)
                .thread_name(|i| format!("toe-images-{i}"))
                .build()
                .map_err(|e| ImagesError::InvalidOption(format!("cannot start {} threads: {e}", options.threads)))?;
            Some(pool)
        } else {
            None
        };
        let (sender, receiver) = sync_channel(options.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(Mutex::new(Vec::new()));
        let built = Arc::new(AtomicUsize::new(0));
        let total = samples.len();
        let producer = {
            let stop = Arc::clone(&stop);
            let skipped = Arc::clone(&skipped);
            let built = Arc::clone(&built);
            std::thread::Builder::new()
                .name("toe-images-batches".into())
                .spawn(move || {
                    let preprocess = ClipPreprocess::new(options.n_px, options.conversion);
                    for chunk in samples.chunks(options.batch_size) {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let build = || build_batch(chunk, &preprocess, options.skip_unreadable, &skipped);
                        let batch = match &pool {
                            Some(pool) => pool.install(build),
                            None => build(),
                        };
                        built.fetch_add(chunk.len(), Ordering::Relaxed);
                        let failed = batch.is_err();
                        if let Ok(None) = batch {
                            continue; // every image of this batch was skipped
                        }
                        // A send error means the consumer is gone: stop.
                        if sender.send(batch.map(|b| b.expect("checked above"))).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| ImagesError::InvalidOption(format!("cannot start the batch thread: {e}")))?
        };
        Ok(Batches { receiver: Some(receiver), producer: Some(producer), stop, skipped, built, total })
    }

    /// Files skipped so far (only with `skip_unreadable`).
    pub fn skipped(&self) -> Vec<SkippedFile> {
        self.skipped.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Samples whose batch has been built so far (queued, handed out or
    /// skipped): progress, and a check that the producer stays bounded.
    pub fn built(&self) -> usize {
        self.built.load(Ordering::Relaxed)
    }

    /// Number of samples given, skipped ones included.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, ImagesError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a producer waiting to send.
        self.receiver.take();
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

/// Decodes and preprocesses one chunk of samples into a batch, in parallel.
/// `Ok(None)` when every image was skipped.
fn build_batch(
    chunk: &[Sample],
    preprocess: &ClipPreprocess,
    skip_unreadable: bool,
    skipped: &Mutex<Vec<SkippedFile>>,
) -> Result<Option<Batch>, ImagesError> {
    let per_image = preprocess.tensor_len();
    let n = preprocess.n_px() as i64;
    let images = Tensor::empty([chunk.len() as i64, 3, n, n], (Kind::Float, tch::Device::Cpu));
    // SAFETY: `images` is a freshly allocated, contiguous f32 CPU tensor of
    // exactly chunk.len() * per_image elements; this slice is the only access
    // to its memory until it is dropped, before `images` is used again.
    let data = unsafe { std::slice::from_raw_parts_mut(images.data_ptr() as *mut f32, chunk.len() * per_image) };
    // Each worker reuses its file and pixel buffers from image to image.
    let results: Vec<Result<(), ImagesError>> = data
        .par_chunks_mut(per_image)
        .zip(chunk.par_iter())
        .map_init(
            || (Vec::new(), Vec::new()),
            |(file, pixels), (out, sample)| {
                read_file(&sample.path, file)?;
                let img = preprocess
                    .decode_reusing(file, std::mem::take(pixels))
                    .map_err(|source| ImagesError::Decode { path: sample.path.clone(), source })?;
                preprocess.write_tensor(&img, out);
                *pixels = img.into_buffer();
                Ok(())
            },
        )
        .collect();

    let mut kept = Vec::with_capacity(chunk.len());
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => kept.push(i),
            Err(e) if skip_unreadable => {
                if let Ok(mut list) = skipped.lock() {
                    list.push(SkippedFile { path: chunk[i].path.clone(), reason: e.to_string() });
                }
            }
            Err(e) => return Err(e),
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    // Move the kept images to the front (in order) when some were skipped.
    for (dst, &src) in kept.iter().enumerate() {
        if dst != src {
            data.copy_within(src * per_image..(src + 1) * per_image, dst * per_image);
        }
    }
    let images = if kept.len() == chunk.len() { images } else { images.narrow(0, 0, kept.len() as i64) };
    Ok(Some(Batch {
        images,
        labels: kept.iter().map(|&i| chunk[i].label).collect(),
        paths: kept.iter().map(|&i| chunk[i].path.clone()).collect(),
    }))
}
