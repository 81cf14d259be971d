//! `.pt` files as Python's `torch.save` writes them, read and written without
//! Python.
//!
//! Since PyTorch 1.6 a `.pt` file is a zip archive: `<archive>/data.pkl` is a
//! pickle of the saved object in which every tensor is a call to
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and
//! every storage a persistent id `('storage', torch.FloatStorage, key,
//! location, numel)` whose bytes are the record `<archive>/data/<key>`.
//! `tch::Tensor::load` only reads a bare tensor written by libtorch and
//! `loadz_multi` only flat dicts, so the original's class-mean files (bare
//! Python tensors) and ZOC's `{'net': state_dict}` checkpoints need this
//! reader. Older files (`_use_new_zipfile_serialization=False`, PyTorch < 1.6)
//! are read too. Pickles go through toe-pipe's safe unpickler.
//!
//! Files we write open with `torch.load` in Python, including with
//! `weights_only=True`: they only name `_rebuild_tensor_v2`, storage types and
//! `collections.OrderedDict`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Device, Tensor};

use super::pickle::{self, opcode, storage_name, Global, StorageRef, TensorRef, Value};

/// An object loaded from a `.pt` file.
#[derive(Debug)]
pub enum PtValue {
    Tensor(Tensor),
    /// A dict or OrderedDict, in insertion order. Integer keys (as in an
    /// optimizer state) become their decimal strings.
    Dict(Vec<(String, PtValue)>),
    /// A list or tuple.
    List(Vec<PtValue>),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
}

impl PtValue {
    /// A state dict (written as an `OrderedDict` of tensors) from named
    /// tensors; the tensors are shallow clones sharing the caller's data.
    pub fn state_dict(entries: &[(String, Tensor)]) -> PtValue {
        PtValue::Dict(entries.iter().map(|(k, t)| (k.clone(), PtValue::Tensor(t.shallow_clone()))).collect())
    }

    /// Python-like name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PtValue::Tensor(_) => "tensor",
            PtValue::Dict(_) => "dict",
            PtValue::List(_) => "list",
            PtValue::Int(_) => "int",
            PtValue::Float(_) => "float",
            PtValue::Str(_) => "str",
            PtValue::Bool(_) => "bool",
            PtValue::None => "None",
        }
    }

    /// The entry `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&PtValue> {
        match self {
            PtValue::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// What a file that PyTorch might have written turns out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchFileKind {
    /// A zip archive written by `torch.save` (PyTorch >= 1.6).
    TorchSave,
    /// A zip archive written by `torch.jit.save` (holds `code/`): open it
    /// with `tch::CModule` or read its tensors with [`load_pt`].
    TorchScript,
    /// A pickle stream written by `torch.save` before PyTorch 1.6 or with
    /// `_use_new_zipfile_serialization=False`.
    LegacyTorchSave,
}

impl std::fmt::Display for TorchFileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TorchFileKind::TorchSave => "torch.save archive",
            TorchFileKind::TorchScript => "TorchScript archive",
            TorchFileKind::LegacyTorchSave => "legacy (pre-1.6) torch.save file",
        })
    }
}

/// Tells a `torch.save` archive from a TorchScript archive or a legacy file.
pub fn detect_kind(path: &Path) -> Result<TorchFileKind> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = [0u8; 4];
    let n = f.read(&mut head).with_context(|| format!("cannot read {}", path.display()))?;
    if n >= 2 && head[0] == opcode::PROTO && head[1] <= 5 {
        return Ok(TorchFileKind::LegacyTorchSave);
    }
    if n < 4 || &head != b"PK\x03\x04" {
        bail!(
            "{}: not a PyTorch file (neither a zip archive nor a pickle; first bytes {:02x?})",
            path.display(),
            &head[..n]
        );
    }
    let archive = Archive::open(path)?;
    Ok(if archive.is_torchscript() { TorchFileKind::TorchScript } else { TorchFileKind::TorchSave })
}

/// A zip archive written by PyTorch: records under one top-level folder.
pub(crate) struct Archive {
    path: String,
    zip: zip::ZipArchive<BufReader<File>>,
    /// Top-level folder, with its trailing slash (`archive/`).
    prefix: String,
}

impl Archive {
    pub(crate) fn open(path: &Path) -> Result<Archive> {
        let shown = path.display().to_string();
        let f = File::open(path).with_context(|| format!("cannot open {shown}"))?;
        let zip = zip::ZipArchive::new(BufReader::new(f))
            .map_err(|e| anyhow!("{shown}: not a readable zip archive (truncated or not a PyTorch file?): {e}"))?;
        let prefix = zip
            .file_names()
            .filter_map(|n| n.strip_suffix("data.pkl"))
            .filter(|p| p.ends_with('/') && p.matches('/').count() == 1)
            .min_by_key(|p| p.len())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{shown}: a zip archive without <archive>/data.pkl, so not written by PyTorch"))?;
        Ok(Archive { path: shown, zip, prefix })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(&format!("{}{name}", self.prefix)).is_some()
    }

    pub(crate) fn is_torchscript(&self) -> bool {
        let code = format!("{}code/", self.prefix);
        self.has("constants.pkl") || self.zip.file_names().any(|n| n.starts_with(&code))
    }

    pub(crate) fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let full = format!("{}{name}", self.prefix);
        let mut entry =
            self.zip.by_name(&full).map_err(|e| anyhow!("{}: record {full} missing or unreadable: {e}", self.path))?;
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut buf)
            .map_err(|e| anyhow!("{}: record {full} is corrupt or truncated: {e}", self.path))?;
        Ok(buf)
    }

    /// Unpickles `data.pkl` and turns it into a [`PtValue`], loading storages
    /// from `data/<key>`.
    fn load(&mut self) -> Result<PtValue> {
        if self.has("byteorder") {
            let order = self.read("byteorder")?;
            if order.trim_ascii() != b"little" {
                bail!(
                    "{}: saved on a {:?}-endian machine; only little-endian files are supported",
                    self.path,
                    String::from_utf8_lossy(&order)
                );
            }
        }
        let pkl = self.read("data.pkl")?;
        let source = format!("{} ({}data.pkl)", self.path, self.prefix);
        let mut load = |pid: &Value| storage_from_pid(pid);
        let value = pickle::unpickle(&pkl, &source, Some(&mut load))?;
        let path = self.path.clone();
        let mut storages = StorageCache::new(|s: &StorageRef| {
            let bytes = self.read(&format!("data/{}", s.key))?;
            storage_tensor(&path, s, &bytes)
        });
        to_pt_value(&value, &mut storages, &path, 0)
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)` -> a storage.
fn storage_from_pid(pid: &Value) -> Result<Value> {
    let Value::Tuple(t) = pid else {
        bail!("persistent id is a {}, expected a storage tuple", pid.type_name());
    };
    match &t[..] {
        [Value::Str(tag), Value::Global(Global::StorageType(kind)), Value::Str(key), Value::Str(loc), Value::Int(numel)]
            if &**tag == "storage" =>
        {
            if *numel < 0 {
                bail!("storage {key} has negative size {numel}");
            }
            Ok(Value::Storage(Rc::new(StorageRef {
                kind: *kind,
                key: key.to_string(),
                location: loc.to_string(),
                numel: *numel,
                base_offset: 0,
            })))
        }
        _ => bail!("unsupported persistent id {pid:?} (only typed torch storages are)"),
    }
}

/// Storages are loaded once each; tensors that share one are views of it.
struct StorageCache<F> {
    load: F,
    loaded: HashMap<String, Tensor>,
}

impl<F: FnMut(&StorageRef) -> Result<Tensor>> StorageCache<F> {
    fn new(load: F) -> Self {
        StorageCache { load, loaded: HashMap::new() }
    }
    fn get(&mut self, s: &StorageRef) -> Result<&Tensor> {
        if !self.loaded.contains_key(&s.key) {
            let t = (self.load)(s)?;
            self.loaded.insert(s.key.clone(), t);
        }
        Ok(&self.loaded[&s.key])
    }
}

/// A one-dimensional CPU tensor over a storage's bytes.
fn storage_tensor(path: &str, s: &StorageRef, bytes: &[u8]) -> Result<Tensor> {
    let need = (s.numel as usize)
        .checked_mul(s.kind.elt_size_in_bytes())
        .ok_or_else(|| anyhow!("{path}: storage {} size overflows", s.key))?;
    if bytes.len() < need {
        bail!(
            "{path}: storage {} is truncated: {} elements of {:?} need {need} bytes, the record has {}",
            s.key,
            s.numel,
            s.kind,
            bytes.len()
        );
    }
    Tensor::f_from_data_size(&bytes[..need], &[s.numel], s.kind)
        .map_err(|e| anyhow!("{path}: cannot build storage {}: {e}", s.key))
}

/// The tensor a `_rebuild_tensor_v2` call describes, as a view of its storage.
fn tensor_view(storage: &Tensor, r: &TensorRef, path: &str) -> Result<Tensor> {
    let numel: i64 = r.size.iter().product();
    let offset = r.offset + r.storage.base_offset;
    if r.size.iter().any(|&d| d < 0) || r.stride.iter().any(|&d| d < 0) || r.offset < 0 {
        bail!("{path}: tensor with size {:?}, stride {:?}, offset {} is malformed", r.size, r.stride, r.offset);
    }
    if numel == 0 {
        return Ok(Tensor::f_empty(r.size.as_slice(), (r.storage.kind, Device::Cpu))?);
    }
    let last: i64 = offset + r.size.iter().zip(&r.stride).map(|(&n, &s)| (n - 1) * s).sum::<i64>();
    if last >= r.storage.numel {
        bail!(
            "{path}: tensor with size {:?}, stride {:?}, offset {} reaches element {last} of storage {} which has {}",
            r.size,
            r.stride,
            r.offset,
            r.storage.key,
            r.storage.numel
        );
    }
    Ok(storage.f_as_strided(r.size.as_slice(), r.stride.as_slice(), offset)?)
}

const MAX_DEPTH: usize = 200;

fn to_pt_value<F>(v: &Value, storages: &mut StorageCache<F>, path: &str, depth: usize) -> Result<PtValue>
where
    F: FnMut(&StorageRef) -> Result<Tensor>,
{
    if depth > MAX_DEPTH {
        bail!("{path}: objects nested more than {MAX_DEPTH} deep (or a cycle)");
    }
    let items = |xs: &[Value], storages: &mut StorageCache<F>| -> Result<Vec<PtValue>> {
        xs.iter().map(|x| to_pt_value(x, storages, path, depth + 1)).collect()
    };
    Ok(match v {
        Value::None => PtValue::None,
        Value::Bool(b) => PtValue::Bool(*b),
        Value::Int(i) => PtValue::Int(*i),
        Value::Float(f) => PtValue::Float(*f),
        Value::Str(s) => PtValue::Str(s.to_string()),
        Value::Tuple(t) => PtValue::List(items(t, storages)?),
        Value::List(l) => PtValue::List(items(&l.borrow(), storages)?),
        Value::Dict(d) => {
            let mut out = Vec::new();
            for (k, v) in d.borrow().iter() {
                let key = match k {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    other => bail!("{path}: a dict key is a {}, expected str or int", other.type_name()),
                };
                out.push((key, to_pt_value(v, storages, path, depth + 1)?));
            }
            PtValue::Dict(out)
        }
        Value::Tensor(r) => {
            let storage = storages.get(&r.storage)?;
            PtValue::Tensor(tensor_view(storage, r, path)?)
        }
        // A TorchScript module: its attributes, as a dict.
        Value::ScriptObject(o) => to_pt_value(&o.borrow().state, storages, path, depth + 1)?,
        other => bail!("{path}: holds a {} where tensors, dicts, lists or scalars were expected", other.type_name()),
    })
}

/// Loads any object `torch.save` wrote (a tensor, a dict or OrderedDict of
/// tensors, nested dicts, lists, numbers, strings). Tensors come back on the
/// CPU whatever device they were saved from; tensors that shared a storage
/// share it again (as views). TorchScript archives load as nested dicts of
/// their modules' attributes.
pub fn load_pt(path: &Path) -> Result<PtValue> {
    match detect_kind(path)? {
        TorchFileKind::LegacyTorchSave => load_legacy(path),
        TorchFileKind::TorchSave | TorchFileKind::TorchScript => Archive::open(path)?.load(),
    }
}

/// Loads the tensors of a state dict, flattening nested dicts (and lists)
/// with `.`-joined keys: `{'net': {'bert.x': t}}` gives `net.bert.x`.
/// Entries that are not tensors (an epoch number, a TorchScript module's
/// `training` flag) are skipped. A file holding a bare tensor, or no tensor
/// at all, is an error.
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let value = load_pt(path)?;
    if let PtValue::Tensor(t) = &value {
        bail!(
            "{}: holds a bare tensor of shape {:?}, not a state dict (use load_tensor_pt for such files)",
            path.display(),
            t.size()
        );
    }
    let mut out = Vec::new();
    flatten(value, String::new(), &mut out);
    if out.is_empty() {
        bail!("{}: holds no tensors, so it is not a state dict", path.display());
    }
    Ok(out)
}

fn flatten(v: PtValue, prefix: String, out: &mut Vec<(String, Tensor)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        PtValue::Tensor(t) => out.push((prefix, t)),
        PtValue::Dict(d) => d.into_iter().for_each(|(k, v)| flatten(v, join(&k), out)),
        PtValue::List(l) => l.into_iter().enumerate().for_each(|(i, v)| flatten(v, join(&i.to_string()), out)),
        _ => {}
    }
}

/// Loads a file that holds one bare tensor (like the original's class-mean
/// and precision files).
pub fn load_tensor_pt(path: &Path) -> Result<Tensor> {
    match load_pt(path)? {
        PtValue::Tensor(t) => Ok(t),
        other => bail!("{}: holds a {}, expected a single tensor", path.display(), other.type_name()),
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Writes one tensor as `torch.save(t, path)` would.
pub fn save_tensor_pt(path: &Path, t: &Tensor) -> Result<()> {
    save_pt(path, &PtValue::Tensor(t.shallow_clone()))
}

/// Writes a state dict as `torch.save(model.state_dict(), path)` would (an
/// `OrderedDict` of tensors), for `model.load_state_dict(torch.load(path))`.
pub fn save_state_dict_pt(path: &Path, entries: &[(String, Tensor)]) -> Result<()> {
    save_pt(path, &PtValue::state_dict(entries))
}

/// Writes a dict of state dicts, e.g. ZOC's `{'net': state_dict}`; for dicts
/// that mix in other values (an epoch number) build a [`PtValue`] and use
/// [`save_pt`].
pub fn save_nested_state_dicts_pt(path: &Path, groups: &[(&str, &[(String, Tensor)])]) -> Result<()> {
    let value = PtValue::Dict(groups.iter().map(|(k, sd)| (k.to_string(), PtValue::state_dict(sd))).collect());
    save_pt(path, &value)
}

/// Writes any [`PtValue`] as `torch.save` would. Dicts whose values are all
/// tensors are written as `collections.OrderedDict` (what a state dict is),
/// other dicts as `dict`. Every tensor gets its own contiguous storage.
pub fn save_pt(path: &Path, value: &PtValue) -> Result<()> {
    let shown = path.display();
    let mut pickler = Pickler::new();
    // Tensors to write as storages, in key order; copied out one at a time
    // so that saving a large model needs little memory beyond the model.
    let mut storages: Vec<&Tensor> = Vec::new();
    pickler.buf.extend_from_slice(&[opcode::PROTO, 2]);
    pickler.value(value, &mut storages, 0).map_err(|e| anyhow!("cannot write {shown}: {e}"))?;
    pickler.buf.push(opcode::STOP);

    let f = File::create(path).with_context(|| format!("cannot create {shown}"))?;
    let io = |e: zip::result::ZipError| anyhow!("cannot write {shown}: {e}");
    let mut zip = zip::ZipWriter::new(BufWriter::new(f));
    // Stored, with data aligned to 64 bytes as PyTorch does, so that
    // `torch.load(..., mmap=True)` can map the storages. A fixed entry time
    // (zip's epoch, 1980-01-01), never the clock's: the store hashes outputs
    // by content, and equal tensors must give equal files.
    let opts = |len: usize| {
        zip::write::SimpleFileOptions::default()
            .last_modified_time(zip::DateTime::default())
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64)
            .large_file(len as u64 >= u32::MAX as u64)
    };
    let record = |zip: &mut zip::ZipWriter<BufWriter<File>>, name: &str, data: &[u8]| -> Result<()> {
        zip.start_file(format!("archive/{name}"), opts(data.len())).map_err(io)?;
        zip.write_all(data).with_context(|| format!("cannot write {shown}"))
    };
    record(&mut zip, "data.pkl", &pickler.buf)?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, t) in storages.iter().enumerate() {
        record(&mut zip, &format!("data/{i}"), &tensor_bytes(t)?)?;
    }
    record(&mut zip, "version", b"3\n")?;
    let mut w = zip.finish().map_err(io)?;
    w.flush().with_context(|| format!("cannot write {shown}"))
}

/// Writes the pickle opcodes of protocol 2 that `torch.save` uses.
struct Pickler {
    buf: Vec<u8>,
}

impl Pickler {
    fn new() -> Self {
        Pickler { buf: Vec::new() }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.buf.push(opcode::GLOBAL);
        self.buf.extend_from_slice(module.as_bytes());
        self.buf.push(b'\n');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'\n');
    }
    fn str(&mut self, s: &str) {
        self.buf.push(opcode::BINUNICODE);
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.buf.extend_from_slice(&[opcode::BININT1, v as u8]);
        } else if (0..65536).contains(&v) {
            self.buf.push(opcode::BININT2);
            self.buf.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.buf.push(opcode::BININT);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.buf.extend_from_slice(&[opcode::LONG1, 8]);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, xs: &[i64]) {
        self.buf.push(opcode::MARK);
        xs.iter().for_each(|&x| self.int(x));
        self.buf.push(opcode::TUPLE);
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.buf.extend_from_slice(&[opcode::EMPTY_TUPLE, opcode::REDUCE]);
    }

    fn value<'t>(&mut self, v: &'t PtValue, storages: &mut Vec<&'t Tensor>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            bail!("objects nested more than {MAX_DEPTH} deep");
        }
        match v {
            PtValue::None => self.buf.push(opcode::NONE),
            PtValue::Bool(b) => self.buf.push(if *b { opcode::NEWTRUE } else { opcode::NEWFALSE }),
            PtValue::Int(i) => self.int(*i),
            PtValue::Float(f) => {
                self.buf.push(opcode::BINFLOAT);
                self.buf.extend_from_slice(&f.to_be_bytes());
            }
            PtValue::Str(s) => self.str(s),
            PtValue::List(items) => {
                self.buf.extend_from_slice(&[opcode::EMPTY_LIST, opcode::MARK]);
                for x in items {
                    self.value(x, storages, depth + 1)?;
                }
                self.buf.push(opcode::APPENDS);
            }
            PtValue::Dict(entries) => {
                let ordered = !entries.is_empty() && entries.iter().all(|(_, v)| matches!(v, PtValue::Tensor(_)));
                if ordered {
                    self.empty_ordered_dict();
                } else {
                    self.buf.push(opcode::EMPTY_DICT);
                }
                self.buf.push(opcode::MARK);
                for (k, x) in entries {
                    self.str(k);
                    self.value(x, storages, depth + 1)?;
                }
                self.buf.push(opcode::SETITEMS);
            }
            PtValue::Tensor(t) => self.tensor(t, storages)?,
        }
        Ok(())
    }

    fn tensor<'t>(&mut self, t: &'t Tensor, storages: &mut Vec<&'t Tensor>) -> Result<()> {
        let kind = t.f_kind()?;
        let storage_type =
            storage_name(kind).ok_or_else(|| anyhow!("tensors of type {kind:?} cannot be saved in a .pt file"))?;
        let size = t.size();
        let numel: i64 = size.iter().product();
        let key = storages.len().to_string();
        storages.push(t);

        self.global("torch._utils", "_rebuild_tensor_v2");
        self.buf.extend_from_slice(&[opcode::MARK, opcode::MARK]);
        self.str("storage");
        self.global("torch", storage_type);
        self.str(&key);
        self.str("cpu");
        self.int(numel);
        self.buf.extend_from_slice(&[opcode::TUPLE, opcode::BINPERSID]);
        self.int(0);
        self.int_tuple(&size);
        self.int_tuple(&contiguous_strides(&size));
        self.buf.push(opcode::NEWFALSE); // requires_grad = False
        self.empty_ordered_dict(); // backward hooks
        self.buf.extend_from_slice(&[opcode::TUPLE, opcode::REDUCE]);
        Ok(())
    }
}

/// A tensor's elements in C order on the CPU, as a storage record holds them.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * t.f_kind()?.elt_size_in_bytes()];
    if numel > 0 {
        // Copies to the CPU and to C order whatever the tensor's layout.
        t.f_copy_data_u8(&mut bytes, numel)?;
    }
    Ok(bytes)
}

/// C-order strides as PyTorch computes them (a zero-length dimension counts as 1).
fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; size.len()];
    for i in (0..size.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * size[i + 1].max(1);
    }
    strides
}

// ---------------------------------------------------------------------------
// Legacy (pre-1.6) files: a magic number, a protocol version and system info,
// each pickled, then the object's pickle, then the list of storage keys, then
// each storage as an 8-byte element count followed by its bytes.

/// `pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)` without the STOP.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

fn load_legacy(path: &Path) -> Result<PtValue> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    if !data.starts_with(LEGACY_MAGIC) || data.get(LEGACY_MAGIC.len()) != Some(&b'.') {
        bail!("{shown}: a pickle but not a PyTorch file (no torch.save magic number)");
    }
    let mut pos = LEGACY_MAGIC.len() + 1;
    let mut next = |load: Option<pickle::PersistentLoad>| -> Result<Value> {
        let (v, used) = pickle::unpickle_prefix(&data[pos..], &shown, load)?;
        pos += used;
        Ok(v)
    };
    match next(None)? {
        Value::Int(1001) => {}
        v => bail!("{shown}: legacy torch.save protocol {v:?} is not supported (1001 is)"),
    }
    let sys_info = next(None)?;
    if let Value::Dict(d) = &sys_info {
        let little = d.borrow().iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Bool(b)) if &**k == "little_endian" => Some(*b),
            _ => None,
        });
        if little == Some(false) {
            bail!("{shown}: saved on a big-endian machine; only little-endian files are supported");
        }
    }
    let mut roots: HashMap<String, Rc<StorageRef>> = HashMap::new();
    let mut load = |pid: &Value| -> Result<Value> { legacy_storage(pid, &mut roots) };
    let object = next(Some(&mut load))?;
    let keys = match next(None)? {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.to_string()),
                other => bail!("{shown}: storage key is a {}", other.type_name()),
            })
            .collect::<Result<Vec<_>>>()?,
        other => bail!("{shown}: expected the list of storage keys, found a {}", other.type_name()),
    };
    let mut loaded: HashMap<String, Tensor> = HashMap::new();
    for key in keys {
        let s = roots.get(&key).ok_or_else(|| anyhow!("{shown}: storage {key} is listed but never used"))?;
        let count = data.get(pos..pos + 8).ok_or_else(|| anyhow!("{shown}: truncated before storage {key}"))?;
        let count = i64::from_le_bytes(count.try_into()?);
        pos += 8;
        if count != s.numel {
            bail!("{shown}: storage {key} holds {count} elements, the pickle says {}", s.numel);
        }
        let len = (count as usize).saturating_mul(s.kind.elt_size_in_bytes());
        let bytes =
            data.get(pos..pos.saturating_add(len)).ok_or_else(|| anyhow!("{shown}: storage {key} is truncated"))?;
        pos += len;
        loaded.insert(key.clone(), storage_tensor(&shown, s, bytes)?);
    }
    let mut storages = StorageCache::new(|s: &StorageRef| {
        loaded.get(&s.key).map(|t| t.shallow_clone()).ok_or_else(|| anyhow!("{shown}: storage {} has no data", s.key))
    });
    to_pt_value(&object, &mut storages, &path.display().to_string(), 0)
}

/// `('storage', type, root_key, location, root_numel, view_metadata)`; a
/// view (old PyTorch only) is the root storage starting at an offset.
fn legacy_storage(pid: &Value, roots: &mut HashMap<String, Rc<StorageRef>>) -> Result<Value> {
    let Value::Tuple(t) = pid else { bail!("persistent id is a {}", pid.type_name()) };
    let [Value::Str(tag), Value::Global(Global::StorageType(kind)), Value::Str(root), Value::Str(loc), Value::Int(numel), view] =
        &t[..]
    else {
        bail!("unsupported legacy persistent id {pid:?}");
    };
    if &**tag != "storage" || *numel < 0 {
        bail!("unsupported legacy persistent id {pid:?}");
    }
    let root_ref = roots
        .entry(root.to_string())
        .or_insert_with(|| {
            Rc::new(StorageRef {
                kind: *kind,
                key: root.to_string(),
                location: loc.to_string(),
                numel: *numel,
                base_offset: 0,
            })
        })
        .clone();
    match view {
        Value::None => Ok(Value::Storage(root_ref)),
        Value::Tuple(v) => match &v[..] {
            [Value::Str(_), Value::Int(offset), Value::Int(_size)] if *offset >= 0 => {
                Ok(Value::Storage(Rc::new(StorageRef { base_offset: *offset, ..(*root_ref).clone() })))
            }
            _ => bail!("unsupported legacy storage view {view:?}"),
        },
        _ => bail!("unsupported legacy storage view {view:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pickle::storage_kind;
    use tch::Kind;

    #[test]
    fn strides_follow_pytorch() {
        assert_eq!(contiguous_strides(&[]), Vec::<i64>::new());
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[0, 3]), vec![3, 1]);
        assert_eq!(contiguous_strides(&[3, 0, 2]), vec![2, 2, 1]);
    }

    #[test]
    fn storage_names_round_trip() {
        for k in [
            Kind::Uint8,
            Kind::Int8,
            Kind::Int16,
            Kind::Int,
            Kind::Int64,
            Kind::Half,
            Kind::Float,
            Kind::Double,
            Kind::Bool,
            Kind::BFloat16,
        ] {
            assert_eq!(storage_kind(storage_name(k).unwrap()), Some(k));
        }
    }
}
