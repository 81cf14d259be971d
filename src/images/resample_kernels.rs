//! Inner loops of Pillow's 8-bit resampling passes
//! (`ImagingResampleHorizontal_8bpc` / `ImagingResampleVertical_8bpc`):
//! a portable version and AVX2 versions that compute the very same integer
//! sums (32-bit products of a sample and a 22-bit weight, added to one half,
//! shifted and clamped), only several at a time. Which one runs is decided
//! per call from the CPU's features; `tests` checks they agree.

use std::ops::Range;

use super::pillow_resize::{clip8, FixedWeights, HALF};

/// `out` resized to `len` bytes (reusing its memory), as a slice.
fn reset(out: &mut Vec<u8>, len: usize) -> &mut [u8] {
    out.clear();
    out.resize(len, 0);
    out
}

/// Horizontal pass: for each row in `rows` of `src` (`width` pixels of `C`
/// bytes), the output positions of `w`, into `out`.
pub(super) fn horizontal<const C: usize>(
    src: &[u8],
    width: usize,
    rows: Range<usize>,
    w: &FixedWeights,
    out: &mut Vec<u8>,
) {
    let out = reset(out, rows.len() * w.bounds.len() * C);
    #[cfg(target_arch = "x86_64")]
    if C == 4 && std::arch::is_x86_feature_detected!("avx2") {
        if let Some(pairs) = avx2::PairWeights::new(w, width) {
            // SAFETY: AVX2 is available (checked above).
            return unsafe { avx2::horizontal4(src, width, rows, &pairs, out) };
        }
    }
    horizontal_portable::<C>(src, width, rows, w, out)
}

/// Vertical pass over the horizontally resampled rows `tmp` (rows
/// `first_row..`, `width` pixels of `C` bytes), for the output rows of `w`,
/// into `out`.
pub(super) fn vertical<const C: usize>(
    tmp: &[u8],
    width: usize,
    first_row: usize,
    w: &FixedWeights,
    out: &mut Vec<u8>,
) {
    let out = reset(out, w.bounds.len() * width * C);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked above).
        return unsafe { avx2::vertical(tmp, width * C, first_row, w, out) };
    }
    vertical_portable::<C>(tmp, width, first_row, w, out)
}

fn horizontal_portable<const C: usize>(src: &[u8], width: usize, rows: Range<usize>, w: &FixedWeights, out: &mut [u8]) {
    let out_width = w.bounds.len();
    for (y, out_row) in rows.zip(out.chunks_exact_mut(out_width * C)) {
        let row = &src[y * width * C..(y + 1) * width * C];
        for (i, px) in out_row.chunks_exact_mut(C).enumerate() {
            let (xmin, taps) = w.bounds[i];
            let mut acc = [HALF; C];
            for (pixel, &k) in row[xmin * C..(xmin + taps) * C].chunks_exact(C).zip(w.taps(i)) {
                for c in 0..C {
                    acc[c] += pixel[c] as i32 * k;
                }
            }
            for c in 0..C {
                px[c] = clip8(acc[c]);
            }
        }
    }
}

fn vertical_portable<const C: usize>(tmp: &[u8], width: usize, first_row: usize, w: &FixedWeights, out: &mut [u8]) {
    let line = width * C;
    let mut acc = vec![0i32; line];
    for (i, out_row) in out.chunks_exact_mut(line).enumerate() {
        let (ymin, _) = w.bounds[i];
        acc.fill(HALF);
        for (t, &k) in w.taps(i).iter().enumerate() {
            let y = ymin + t - first_row;
            for (a, &p) in acc.iter_mut().zip(&tmp[y * line..(y + 1) * line]) {
                *a += p as i32 * k;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::pillow_resize::{FixedWeights, HALF, PRECISION_BITS};

    /// Horizontal weights laid out for two taps per 256-bit register:
    /// `[k0, k0, k0, k0, k1, k1, k1, k1]` for a pair of 4-byte pixels. Each
    /// position reads `pairs * 2` pixels from `start`; taps outside its own
    /// range have weight 0 (adding 0 changes no sum). `start` is moved left
    /// where needed so that reads stay inside the row.
    pub(super) struct PairWeights {
        starts: Vec<usize>,
        pairs: usize,
        lanes: Vec<i32>,
    }

    impl PairWeights {
        pub(super) fn new(w: &FixedWeights, width: usize) -> Option<PairWeights> {
            let max_taps = w.bounds.iter().map(|b| b.1).max().unwrap_or(0);
            let pairs = max_taps.div_ceil(2);
            if pairs * 2 > width {
                return None; // a tiny source: the portable loop handles it
            }
            let mut starts = Vec::with_capacity(w.bounds.len());
            let mut lanes = vec![0i32; w.bounds.len() * pairs * 8];
            for (i, &(xmin, _)) in w.bounds.iter().enumerate() {
                let start = xmin.min(width - pairs * 2);
                let shift = xmin - start;
                let lane = &mut lanes[i * pairs * 8..(i + 1) * pairs * 8];
                for (t, &k) in w.taps(i).iter().enumerate() {
                    let tap = t + shift;
                    let base = (tap / 2) * 8 + (tap % 2) * 4;
                    lane[base..base + 4].fill(k);
                }
                starts.push(start);
            }
            Some(PairWeights { starts, pairs, lanes })
        }
    }

    /// Four sums of 22-bit fixed point to bytes, as clip8 does each: shift
    /// right (floor), then saturate to 0..=255.
    #[inline(always)]
    unsafe fn pack_clip8(a: __m256i, b: __m256i) -> __m128i {
        let a = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(a);
        let b = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(b);
        // i32 -> i16 with signed saturation (values are within -640..639),
        // then i16 -> u8 with unsigned saturation: the clamp to 0..=255.
        let words = _mm256_packs_epi32(a, b); // lanes: a0..3 b0..3 | a4..7 b4..7
        let bytes = _mm256_packus_epi16(words, words);
        // Gather the low 4 bytes of each 64-bit half back into a, b order.
        let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        _mm256_castsi256_si128(ordered)
    }

    /// 8 bytes at `p`, zero-extended to eight 32-bit lanes.
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256i {
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i))
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal4(src: &[u8], width: usize, rows: Range<usize>, w: &PairWeights, out: &mut [u8]) {
        let out_width = w.starts.len();
        let half = _mm256_set1_epi32(HALF);
        let pairs = w.pairs;
        // Sum of one position's taps: even taps in the low half, odd taps in
        // the high half of the accumulator.
        let position = |row: &[u8], i: usize| -> __m256i {
            let start = w.starts[i];
            let lanes = &w.lanes[i * pairs * 8..(i + 1) * pairs * 8];
            debug_assert!((start + pairs * 2) * 4 <= row.len());
            let mut acc = _mm256_setzero_si256();
            for j in 0..pairs {
                // SAFETY: PairWeights keeps start + 2 * pairs <= width.
                let p = load8(row.as_ptr().add((start + 2 * j) * 4));
                let k = _mm256_loadu_si256(lanes.as_ptr().add(j * 8) as *const __m256i);
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, k));
            }
            acc
        };
        for (y, out_row) in rows.zip(out.chunks_exact_mut(out_width * 4)) {
            let row = &src[y * width * 4..(y + 1) * width * 4];
            // Two output pixels at a time: [a.even, b.even] + [a.odd, b.odd].
            let mut i = 0;
            while i + 2 <= out_width {
                let a = position(row, i);
                let b = position(row, i + 1);
                let even = _mm256_permute2x128_si256::<0x20>(a, b);
                let odd = _mm256_permute2x128_si256::<0x31>(a, b);
                let sum = _mm256_add_epi32(_mm256_add_epi32(even, odd), half);
                let v = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sum);
                let words = _mm256_packs_epi32(v, v); // a0..3 a0..3 | b0..3 b0..3
                let bytes = _mm256_packus_epi16(words, words);
                let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
                let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(bytes));
                out_row[i * 4..i * 4 + 4].copy_from_slice(&lo.to_le_bytes());
                out_row[i * 4 + 4..i * 4 + 8].copy_from_slice(&hi.to_le_bytes());
                i += 2;
            }
            if i < out_width {
                let a = position(row, i);
                let sum = _mm256_add_epi32(_mm256_add_epi32(a, _mm256_permute2x128_si256::<0x11>(a, a)), half);
                let v = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sum);
                let bytes = _mm256_packus_epi16(_mm256_packs_epi32(v, v), v);
                let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
                out_row[i * 4..i * 4 + 4].copy_from_slice(&lo.to_le_bytes());
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn vertical(tmp: &[u8], line: usize, first_row: usize, w: &FixedWeights, out: &mut [u8]) {
        let wide = line / 16 * 16;
        for (i, out_row) in out.chunks_exact_mut(line).enumerate() {
            let (ymin, _) = w.bounds[i];
            let taps = w.taps(i);
            let rows: Vec<&[u8]> = (0..taps.len())
                .map(|t| &tmp[(ymin + t - first_row) * line..(ymin + t - first_row + 1) * line])
                .collect();
            let mut x = 0;
            while x < wide {
                let mut a = _mm256_set1_epi32(HALF);
                let mut b = _mm256_set1_epi32(HALF);
                for (row, &k) in rows.iter().zip(taps) {
                    let k = _mm256_set1_epi32(k);
                    // SAFETY: x + 16 <= wide <= line == row.len()
                    a = _mm256_add_epi32(a, _mm256_mullo_epi32(load8(row.as_ptr().add(x)), k));
                    b = _mm256_add_epi32(b, _mm256_mullo_epi32(load8(row.as_ptr().add(x + 8)), k));
                }
                let lo = pack_clip8(a, b);
                _mm_storeu_si128(out_row.as_mut_ptr().add(x) as *mut __m128i, lo);
                x += 16;
            }
            for x in wide..line {
                let mut acc = HALF;
                for (row, &k) in rows.iter().zip(taps) {
                    acc += row[x] as i32 * k;
                }
                out_row[x] = super::clip8(acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(in_size: usize, out_size: usize, positions: Range<usize>) -> FixedWeights {
        super::super::pillow_resize::test_weights(in_size, out_size, positions)
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    /// The dispatching functions (AVX2 where the CPU has it) against the
    /// portable loops, over down- and upscales, windows and odd widths.
    #[test]
    fn fast_paths_equal_portable_loops() {
        for &(w_in, h_in, w_out, h_out) in
            &[(500, 375, 298, 224), (37, 23, 81, 60), (3, 5, 224, 40), (9, 300, 7, 31), (640, 2, 5, 300)]
        {
            let src = pseudo_random(w_in * h_in * 4, (w_in * 31 + h_in) as u32);
            let cols = weights(w_in, w_out, 1..w_out);
            let rows_w = weights(h_in, h_out, 0..h_out);
            let rows = 0..h_in;
            let mut a = Vec::new();
            horizontal::<4>(&src, w_in, rows.clone(), &cols, &mut a);
            let mut b = vec![0u8; a.len()];
            horizontal_portable::<4>(&src, w_in, rows, &cols, &mut b);
            assert_eq!(a, b, "horizontal {w_in}x{h_in} -> {w_out}");
            let tmp_w = w_out - 1;
            let mut fast = Vec::new();
            vertical::<4>(&a, tmp_w, 0, &rows_w, &mut fast);
            let mut portable = vec![0u8; fast.len()];
            vertical_portable::<4>(&a, tmp_w, 0, &rows_w, &mut portable);
            assert_eq!(fast, portable, "vertical {w_in}x{h_in} -> {h_out}");
            let grey = pseudo_random(w_in * h_in, 7);
            vertical::<1>(&grey, w_in, 0, &rows_w, &mut fast);
            let mut portable = vec![0u8; fast.len()];
            vertical_portable::<1>(&grey, w_in, 0, &rows_w, &mut portable);
            assert_eq!(fast, portable, "vertical grey");
        }
    }
}
