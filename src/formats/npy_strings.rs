//! String arrays in `.npy` files.
//!
//! The original TOE code keeps class names and textual outliers in `.npy`
//! files of two kinds: numpy unicode arrays (`<U37`: fixed-width UTF-32) and
//! object arrays written with `allow_pickle=True` (a pickle after the header).
//! [`read_strings`] accepts both (and byte-string `|S` arrays). We always
//! write unicode arrays, which `np.load` opens without `allow_pickle`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::npy::{read_header, write_header, NpyHeader};
use super::pickle::{self, decode_utf32, Value};

/// Reads a one-dimensional (or any-shape, flattened in C order) array of
/// strings from `path`: a numpy unicode array, a byte-string array, or an
/// object array of `str` pickled with `allow_pickle=True`. The pickle is read
/// by toe-pipe's safe unpickler, which never runs code from the file.
pub fn read_strings(path: &Path) -> Result<Vec<String>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::new(f);
    let header = read_header(&mut r, path)?;
    let mut data = Vec::new();
    r.read_to_end(&mut data).with_context(|| format!("cannot read {}", path.display()))?;
    let (order, code) = split_descr(&header.descr);
    match code.as_bytes().first() {
        Some(b'U') => fixed_width(path, &header, &data, code, |b| decode_utf32(b, order == '>')),
        Some(b'S') => fixed_width(path, &header, &data, code, |b| {
            let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            String::from_utf8(b[..end].to_vec()).map_err(|_| anyhow!("byte string is not UTF-8"))
        }),
        Some(b'O') => object_strings(path, &header, &data),
        _ => bail!(
            "{}: holds dtype {:?}, not strings (expected a unicode <U, byte |S or object |O array)",
            path.display(),
            header.descr
        ),
    }
}

fn split_descr(descr: &str) -> (char, &str) {
    match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('|', descr),
    }
}

fn check_layout(path: &Path, header: &NpyHeader) -> Result<()> {
    if header.fortran_order && header.shape.iter().filter(|&&d| d > 1).count() > 1 {
        bail!("{}: Fortran-order string arrays of shape {:?} are not supported", path.display(), header.shape);
    }
    Ok(())
}

fn fixed_width(
    path: &Path,
    header: &NpyHeader,
    data: &[u8],
    code: &str,
    decode: impl Fn(&[u8]) -> Result<String>,
) -> Result<Vec<String>> {
    check_layout(path, header)?;
    let width: usize =
        code[1..].parse().map_err(|_| anyhow!("{}: bad string dtype {:?}", path.display(), header.descr))?;
    let item = if code.starts_with('U') { width * 4 } else { width };
    let n = header.numel();
    let need = n.checked_mul(item).ok_or_else(|| anyhow!("{}: array size overflows", path.display()))?;
    if data.len() < need {
        bail!(
            "{}: truncated: {n} strings of dtype {} need {need} bytes of data, the file has {}",
            path.display(),
            header.descr,
            data.len()
        );
    }
    if item == 0 {
        return Ok(vec![String::new(); n]);
    }
    data[..need]
        .chunks_exact(item)
        .enumerate()
        .map(|(i, b)| decode(b).with_context(|| format!("{}: string {i}", path.display())))
        .collect()
}

fn object_strings(path: &Path, header: &NpyHeader, data: &[u8]) -> Result<Vec<String>> {
    let source = path.display().to_string();
    object_values(path, header, data)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Str(s) => Ok(s.to_string()),
            Value::Bytes(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| anyhow!("{source}: element {i} is bytes that are not UTF-8"))
            }
            other => bail!("{source}: element {i} is a {}, not a string", other.type_name()),
        })
        .collect()
}

/// The elements of a pickled numpy object array, flattened.
fn object_values(path: &Path, header: &NpyHeader, data: &[u8]) -> Result<Vec<Value>> {
    check_layout(path, header)?;
    let source = path.display().to_string();
    let value = pickle::unpickle(data, &source, None)?;
    let Value::NumpyArray(arr) = value else {
        bail!("{source}: the pickle holds a {}, not a numpy object array", value.type_name());
    };
    let arr = arr.borrow();
    let objects = arr.objects.as_ref().ok_or_else(|| anyhow!("{source}: the pickled array is not an object array"))?;
    let expected: i64 = arr.shape.iter().product();
    if objects.len() as i64 != expected || expected as usize != header.numel() {
        bail!(
            "{source}: the pickle holds {} objects but the shape is {:?} (header {:?})",
            objects.len(),
            arr.shape,
            header.shape
        );
    }
    Ok(objects.to_vec())
}

/// Reads an index array: integers in a numeric `.npy`, or an object array
/// of Python ints as the original writes its caption index file
/// (`np.array(index, dtype=object)`).
pub fn read_indices(path: &Path) -> Result<Vec<i64>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::new(f);
    let header = read_header(&mut r, path)?;
    if split_descr(&header.descr).1 != "O" {
        let t = super::npy::read_npy_tensor(path)?;
        if t.is_floating_point() {
            bail!("{}: holds floats, not indices", path.display());
        }
        return Ok(Vec::<i64>::try_from(&t.to_kind(tch::Kind::Int64).flatten(0, -1))?);
    }
    let mut data = Vec::new();
    r.read_to_end(&mut data).with_context(|| format!("cannot read {}", path.display()))?;
    object_values(path, &header, &data)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Int(n) => Ok(*n),
            other => bail!("{}: element {i} is a {}, not an integer", path.display(), other.type_name()),
        })
        .collect()
}

/// Writes strings as a one-dimensional numpy unicode array (`<U{n}`, n the
/// longest string in characters, at least 1), which `np.load` reads without
/// `allow_pickle`. numpy pads with NUL and strips trailing NULs on reading,
/// so a string ending in `'\0'` cannot be stored; that is an error.
pub fn write_strings<S: AsRef<str>>(path: &Path, strings: &[S]) -> Result<()> {
    let width = strings.iter().map(|s| s.as_ref().chars().count()).max().unwrap_or(0).max(1);
    if let Some(i) = strings.iter().position(|s| s.as_ref().ends_with('\0')) {
        bail!("{}: string {i} ends with a NUL character, which numpy unicode arrays cannot keep", path.display());
    }
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(f);
    let io = |e: std::io::Error| anyhow!("cannot write {}: {e}", path.display());
    write_header(&mut w, &format!("<U{width}"), false, &[strings.len()]).map_err(io)?;
    let mut item = Vec::with_capacity(width * 4);
    for s in strings {
        item.clear();
        for c in s.as_ref().chars() {
            item.extend_from_slice(&(c as u32).to_le_bytes());
        }
        item.resize(width * 4, 0);
        w.write_all(&item).map_err(io)?;
    }
    w.flush().map_err(io)
}
