//! Numeric `.npy` arrays of any shape, both ways, through `ndarray-npy`, and
//! conversions between `ndarray` arrays and `tch` tensors.
//!
//! `ndarray-npy` does the element encoding; this module adds errors that name
//! the file and the dtype found, a header reader (to pick the element type of
//! a file before reading it, and for the string arrays of `npy_strings`), and
//! the tensor side.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use ndarray_npy::{ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};
use tch::{Kind, Tensor};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The header of an `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyHeader {
    /// The dtype string, e.g. `<f4`, `|b1`, `<U37`, `|O`.
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes from the start of the file to the array data.
    pub data_offset: usize,
}

impl NpyHeader {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Reads the header of an `.npy` stream, leaving `r` at the start of the data.
pub fn read_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).with_context(|| format!("{}: too short to be a .npy file", path.display()))?;
    if &pre[..6] != MAGIC {
        bail!("{}: not a .npy file (wrong magic bytes {:?})", path.display(), &pre[..6]);
    }
    let (len, prefix) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).with_context(|| format!("{}: truncated .npy header", path.display()))?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).with_context(|| format!("{}: truncated .npy header", path.display()))?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => bail!("{}: .npy format version {v} is not supported (1, 2 and 3 are)", path.display()),
    };
    if len > 1 << 24 {
        bail!("{}: .npy header length {len} is implausible", path.display());
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).with_context(|| format!("{}: truncated .npy header", path.display()))?;
    let text = String::from_utf8(text).map_err(|_| anyhow!("{}: .npy header is not text", path.display()))?;
    let dict =
        parse_header_dict(&text).map_err(|e| anyhow!("{}: cannot parse .npy header {text:?}: {e}", path.display()))?;
    Ok(NpyHeader { data_offset: prefix + len, ..dict })
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header_dict(text: &str) -> std::result::Result<NpyHeader, String> {
    let mut p = Lit { s: text.trim().as_bytes(), i: 0 };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    p.expect(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err("structured dtypes are not supported".into());
                }
                descr = Some(p.string()?)
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.int_tuple()?),
            other => return Err(format!("unexpected key {other:?}")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    Ok(NpyHeader {
        descr: descr.ok_or("no 'descr'")?,
        fortran_order: fortran.ok_or("no 'fortran_order'")?,
        shape: shape.ok_or("no 'shape'")?,
        data_offset: 0,
    })
}

/// A cursor over the Python literal of an npy header.
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lit<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = self.peek().filter(|&c| c == b'\'' || c == b'"').ok_or(format!("expected a string at {}", self.i))?;
        self.i += 1;
        let start = self.i;
        while self.peek().ok_or("unterminated string")? != q {
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?.to_string();
        self.i += 1;
        Ok(s)
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at {}", self.i))
        }
    }
    fn int_tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(out);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            // Python 2 wrote shapes as `(3L, 4L)`.
            self.eat(b'L');
            out.push(digits.parse().map_err(|_| format!("bad dimension at {start}"))?);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

/// Writes an npy v1 header (v2 when it would not fit), padded with spaces so
/// that the data starts on a 64-byte boundary, as numpy does.
pub fn write_header(w: &mut impl Write, descr: &str, fortran_order: bool, shape: &[usize]) -> std::io::Result<()> {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let fortran = if fortran_order { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    let v1 = prefix_fits_u16(dict.len());
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    dict.push_str(&" ".repeat(total - prefix - dict.len() - 1));
    dict.push('\n');
    w.write_all(MAGIC)?;
    if v1 {
        w.write_all(&[1, 0])?;
        w.write_all(&(dict.len() as u16).to_le_bytes())?;
    } else {
        w.write_all(&[2, 0])?;
        w.write_all(&(dict.len() as u32).to_le_bytes())?;
    }
    w.write_all(dict.as_bytes())
}

/// Whether a header dict of `len` bytes (plus its newline and padding of up
/// to 63 bytes) fits version 1's 16-bit length field.
fn prefix_fits_u16(len: usize) -> bool {
    len + 64 <= u16::MAX as usize
}

/// Reads the header of the `.npy` file at `path`.
pub fn read_npy_header(path: &Path) -> Result<NpyHeader> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_header(&mut BufReader::new(f), path)
}

/// Element types that go both ways between `.npy`, `ndarray` and `tch`.
pub trait NpyElement: ReadableElement + WritableElement + tch::kind::Element + Clone {
    /// Python's name of the dtype, for messages.
    const NUMPY_NAME: &'static str;
}

macro_rules! npy_element {
    ($t:ty, $name:expr) => {
        impl NpyElement for $t {
            const NUMPY_NAME: &'static str = $name;
        }
    };
}
npy_element!(f32, "float32");
npy_element!(f64, "float64");
npy_element!(i64, "int64");
npy_element!(i32, "int32");
npy_element!(i16, "int16");
npy_element!(i8, "int8");
npy_element!(u8, "uint8");
npy_element!(bool, "bool");

/// Reads an `.npy` file of element type `T` and any shape.
pub fn read_npy<T: NpyElement>(path: &Path) -> Result<ArrayD<T>> {
    let header = read_npy_header(path)?;
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ArrayD::<T>::read_npy(BufReader::new(f)).map_err(|e| {
        anyhow!(
            "{}: cannot read as a {} array (the file holds dtype {:?}, shape {:?}): {e}",
            path.display(),
            T::NUMPY_NAME,
            header.descr,
            header.shape
        )
    })
}

/// Writes an array of any shape as `.npy` (C order).
pub fn write_npy<T, S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    T: NpyElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(f);
    array.write_npy(&mut w).map_err(|e| anyhow!("{}: cannot write .npy: {e}", path.display()))?;
    w.flush().with_context(|| format!("cannot write {}", path.display()))
}

/// Copies an array into a new CPU tensor of the same shape.
pub fn array_to_tensor<T, S, D>(array: &ArrayBase<S, D>) -> Result<Tensor>
where
    T: NpyElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    let standard = array.as_standard_layout();
    let data = standard.as_slice().ok_or_else(|| anyhow!("array is not contiguous after relayout"))?;
    Ok(Tensor::f_from_slice(data)?.f_reshape(shape)?)
}

/// Copies a tensor of element type `T` (any device, any strides) into an array.
pub fn tensor_to_array<T: NpyElement>(t: &Tensor) -> Result<ArrayD<T>> {
    let kind = t.f_kind()?;
    if kind != T::KIND {
        bail!("tensor has element type {kind:?}, expected {:?} ({})", T::KIND, T::NUMPY_NAME);
    }
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let mut data = vec![T::ZERO; numel];
    t.f_copy_data(&mut data, numel)?;
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), data)?)
}

/// Reads a numeric `.npy` file into a CPU tensor whose element type follows
/// the file's dtype (float32, float64, int64, int32, int16, int8, uint8, bool).
pub fn read_npy_tensor(path: &Path) -> Result<Tensor> {
    let header = read_npy_header(path)?;
    let code = header.descr.trim_start_matches(['<', '>', '|', '=']);
    let t = match code {
        "f4" => array_to_tensor(&read_npy::<f32>(path)?),
        "f8" => array_to_tensor(&read_npy::<f64>(path)?),
        "i8" => array_to_tensor(&read_npy::<i64>(path)?),
        "i4" => array_to_tensor(&read_npy::<i32>(path)?),
        "i2" => array_to_tensor(&read_npy::<i16>(path)?),
        "i1" => array_to_tensor(&read_npy::<i8>(path)?),
        "u1" => array_to_tensor(&read_npy::<u8>(path)?),
        "b1" => array_to_tensor(&read_npy::<bool>(path)?),
        _ => bail!(
            "{}: unsupported .npy dtype {:?} for a tensor (supported: float32, float64, int64, int32, \
             int16, int8, uint8, bool; strings go through read_strings)",
            path.display(),
            header.descr
        ),
    };
    t.with_context(|| format!("{}: cannot convert to a tensor", path.display()))
}

/// Writes a tensor (any device, any strides) as a C-order `.npy` file.
pub fn write_npy_tensor(path: &Path, t: &Tensor) -> Result<()> {
    match t.f_kind()? {
        Kind::Float => write_npy(path, &tensor_to_array::<f32>(t)?),
        Kind::Double => write_npy(path, &tensor_to_array::<f64>(t)?),
        Kind::Int64 => write_npy(path, &tensor_to_array::<i64>(t)?),
        Kind::Int => write_npy(path, &tensor_to_array::<i32>(t)?),
        Kind::Int16 => write_npy(path, &tensor_to_array::<i16>(t)?),
        Kind::Int8 => write_npy(path, &tensor_to_array::<i8>(t)?),
        Kind::Uint8 => write_npy(path, &tensor_to_array::<u8>(t)?),
        Kind::Bool => write_npy(path, &tensor_to_array::<bool>(t)?),
        k => bail!("{}: cannot write a {k:?} tensor as .npy; convert it to float32 first", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        for shape in [vec![], vec![3], vec![2, 0, 5]] {
            let mut buf = Vec::new();
            write_header(&mut buf, "<f4", false, &shape).unwrap();
            assert_eq!(buf.len() % 64, 0);
            let h = read_header(&mut buf.as_slice(), Path::new("mem")).unwrap();
            assert_eq!(h.descr, "<f4");
            assert_eq!(h.shape, shape);
            assert_eq!(h.data_offset, buf.len());
        }
    }

    #[test]
    fn header_parser_accepts_python2_longs_and_rejects_structs() {
        let h = parse_header_dict("{'descr': '<i8', 'fortran_order': True, 'shape': (3L, 4L), }").unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert!(h.fortran_order);
        assert!(parse_header_dict("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }").is_err());
    }
}
