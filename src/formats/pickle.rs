//! A small, safe reader of Python pickles.
//!
//! Python's own unpickler imports and calls whatever a file names, so opening
//! an untrusted pickle runs code. This one never runs anything: it understands
//! the opcodes that numpy and `torch.save` emit and a short allow-list of
//! globals (numpy array reconstruction, `collections.OrderedDict`, torch's
//! tensor rebuild functions and storage types, and TorchScript's `__torch__.*`
//! module classes as inert records). Every other opcode or global is an error
//! that names it and the file.
//!
//! Values that are built and then mutated (lists, dicts, objects finished by
//! `BUILD`) are shared through `Rc<RefCell<..>>` so that a memo reference sees
//! the same object, as in Python.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};
use tch::Kind;

/// A value shared between the stack and the memo, mutable by later opcodes.
pub type Shared<T> = Rc<RefCell<T>>;

fn shared<T>(v: T) -> Shared<T> {
    Rc::new(RefCell::new(v))
}

/// A Python object as far as this reader understands it.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Shared<Vec<Value>>),
    /// A dict or OrderedDict; insertion order is kept.
    Dict(Shared<Vec<(Value, Value)>>),
    /// An allowed class or function, not yet called.
    Global(Global),
    /// A torch storage named by a persistent id (data lives outside the pickle).
    Storage(Rc<StorageRef>),
    /// A torch tensor: a view into a storage.
    Tensor(Rc<TensorRef>),
    /// A numpy array; its contents arrive with `BUILD`.
    NumpyArray(Shared<NumpyArray>),
    /// A numpy dtype; byte order arrives with `BUILD`.
    NumpyDtype(Shared<NumpyDtype>),
    /// An instance of a TorchScript class (`__torch__.*`), kept as its
    /// attribute state; nothing of the class is run.
    ScriptObject(Shared<ScriptObject>),
}

impl Value {
    /// Python-like name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "torch storage",
            Value::Tensor(_) => "torch tensor",
            Value::NumpyArray(_) => "numpy array",
            Value::NumpyDtype(_) => "numpy dtype",
            Value::ScriptObject(_) => "TorchScript object",
        }
    }
}

/// The globals a pickle may name. Anything else is refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    OrderedDict,
    /// `_codecs.encode(str, 'latin1')`: how protocol 2 writes `bytes`.
    CodecsEncode,
    NumpyReconstruct,
    NumpyNdarray,
    NumpyDtype,
    /// `numpy.core.multiarray.scalar(dtype, bytes)`: a numpy scalar.
    NumpyScalar,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`.
    RebuildFromTypeV2,
    /// `torch.Tensor` or `torch.nn.Parameter` as the type argument above.
    TensorType,
    TorchSize,
    /// `torch.FloatStorage` and friends: the element type of a storage.
    StorageType(Kind),
    /// A TorchScript class such as `__torch__.torch.nn.modules.linear.Linear`.
    ScriptClass(Rc<str>),
    /// `torch.jit._pickle.build_intlist`, `restore_type_tag` and friends:
    /// TorchScript's type annotations on containers; each returns its first
    /// argument unchanged.
    JitPassThrough,
}

/// Resolves `module.name` against the allow-list.
fn resolve_global(module: &str, name: &str) -> Option<Global> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::NumpyReconstruct,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::NumpyScalar,
        ("numpy", "ndarray") => Global::NumpyNdarray,
        ("numpy", "dtype") => Global::NumpyDtype,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch._tensor", "Tensor") | ("torch", "Tensor") => Global::TensorType,
        ("torch.nn.parameter", "Parameter") => Global::TensorType,
        ("torch", "Size") => Global::TorchSize,
        (
            "torch.jit._pickle",
            "build_intlist" | "build_tensorlist" | "build_doublelist" | "build_boollist" | "restore_type_tag",
        ) => Global::JitPassThrough,
        ("torch" | "torch.cuda", storage) => Global::StorageType(storage_kind(storage)?),
        (m, n) if m == "__torch__" || m.starts_with("__torch__.") => Global::ScriptClass(format!("{m}.{n}").into()),
        _ => return None,
    };
    Some(g)
}

/// Element type of a torch storage class name such as `FloatStorage`.
pub fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "ByteStorage" => Kind::Uint8,
        "CharStorage" => Kind::Int8,
        "ShortStorage" => Kind::Int16,
        "IntStorage" => Kind::Int,
        "LongStorage" => Kind::Int64,
        "HalfStorage" => Kind::Half,
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "BoolStorage" => Kind::Bool,
        "BFloat16Storage" => Kind::BFloat16,
        "ComplexFloatStorage" => Kind::ComplexFloat,
        "ComplexDoubleStorage" => Kind::ComplexDouble,
        _ => return None,
    })
}

/// Storage class name of an element type, the inverse of [`storage_kind`].
pub fn storage_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Uint8 => "ByteStorage",
        Kind::Int8 => "CharStorage",
        Kind::Int16 => "ShortStorage",
        Kind::Int => "IntStorage",
        Kind::Int64 => "LongStorage",
        Kind::Half => "HalfStorage",
        Kind::Float => "FloatStorage",
        Kind::Double => "DoubleStorage",
        Kind::Bool => "BoolStorage",
        Kind::BFloat16 => "BFloat16Storage",
        Kind::ComplexFloat => "ComplexFloatStorage",
        Kind::ComplexDouble => "ComplexDoubleStorage",
        _ => return None,
    })
}

/// A torch storage as named by a persistent id:
/// `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Clone, Debug)]
pub struct StorageRef {
    pub kind: Kind,
    /// Name of the record holding the bytes (`data/<key>` in a zip archive).
    pub key: String,
    /// Device the tensor was saved from (`cpu`, `cuda:0`); data is loaded on CPU.
    pub location: String,
    /// Number of elements of `kind` in the storage.
    pub numel: i64,
    /// Where the storage starts in the record, in elements (only storage
    /// views in legacy files have a non-zero one).
    pub base_offset: i64,
}

/// A tensor as `_rebuild_tensor_v2` describes it.
#[derive(Clone, Debug)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// A numpy array as `_reconstruct` + `BUILD` describe it.
#[derive(Clone, Debug, Default)]
pub struct NumpyArray {
    pub shape: Vec<i64>,
    pub dtype: Option<NumpyDtype>,
    pub fortran_order: bool,
    /// For object arrays: the elements.
    pub objects: Option<Vec<Value>>,
    /// For other arrays: the raw bytes.
    pub raw: Option<Rc<[u8]>>,
}

/// A numpy dtype: its code as given to `numpy.dtype` (`O8`, `f4`, `U5`) and
/// the byte order set by `BUILD` (`<`, `>`, `|`).
#[derive(Clone, Debug, Default)]
pub struct NumpyDtype {
    pub code: String,
    pub byte_order: Option<String>,
}

/// A TorchScript object: class name and attribute state.
#[derive(Clone, Debug)]
pub struct ScriptObject {
    pub class: Rc<str>,
    pub state: Value,
}

/// Turns a persistent id into a value (torch files name storages this way).
pub type PersistentLoad<'a> = &'a mut dyn FnMut(&Value) -> Result<Value>;

/// Unpickles `data`. `source` names the file in error messages.
/// Without `persistent_load`, a persistent id is an error.
pub fn unpickle(data: &[u8], source: &str, persistent_load: Option<PersistentLoad>) -> Result<Value> {
    Ok(unpickle_prefix(data, source, persistent_load)?.0)
}

/// Unpickles the pickle at the start of `data` and returns it with the
/// number of bytes it took (legacy torch files hold several in a row).
pub fn unpickle_prefix(data: &[u8], source: &str, persistent_load: Option<PersistentLoad>) -> Result<(Value, usize)> {
    let mut machine =
        Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), persistent_load };
    let value = machine.run().map_err(|e| anyhow!("{source}: {e}"))?;
    Ok((value, machine.pos))
}

struct Machine<'a, 'p> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    persistent_load: Option<PersistentLoad<'p>>,
}

/// The pickle opcodes under their names in CPython's `pickle.py` (and
/// `pickletools`), for the reader here and the writer in `torch_pt`.
macro_rules! opcodes {
    ($($name:ident = $byte:expr,)*) => {
        pub(crate) mod opcode {
            $(pub const $name: u8 = $byte;)*

            /// The Python name of an opcode, for error messages.
            pub fn name(op: u8) -> &'static str {
                match op {
                    $($name => stringify!($name),)*
                    _ => "unknown",
                }
            }
        }
    };
}

opcodes! {
    MARK = b'(',
    STOP = b'.',
    POP = b'0',
    POP_MARK = b'1',
    DUP = b'2',
    FLOAT = b'F',
    INT = b'I',
    BININT = b'J',
    BININT1 = b'K',
    LONG = b'L',
    BININT2 = b'M',
    NONE = b'N',
    PERSID = b'P',
    BINPERSID = b'Q',
    REDUCE = b'R',
    STRING = b'S',
    BINSTRING = b'T',
    SHORT_BINSTRING = b'U',
    UNICODE = b'V',
    BINUNICODE = b'X',
    APPEND = b'a',
    BUILD = b'b',
    GLOBAL = b'c',
    DICT = b'd',
    EMPTY_DICT = b'}',
    APPENDS = b'e',
    GET = b'g',
    BINGET = b'h',
    INST = b'i',
    LONG_BINGET = b'j',
    LIST = b'l',
    EMPTY_LIST = b']',
    OBJ = b'o',
    PUT = b'p',
    BINPUT = b'q',
    LONG_BINPUT = b'r',
    SETITEM = b's',
    TUPLE = b't',
    EMPTY_TUPLE = b')',
    SETITEMS = b'u',
    BINFLOAT = b'G',
    PROTO = 0x80,
    NEWOBJ = 0x81,
    EXT1 = 0x82,
    EXT2 = 0x83,
    EXT4 = 0x84,
    TUPLE1 = 0x85,
    TUPLE2 = 0x86,
    TUPLE3 = 0x87,
    NEWTRUE = 0x88,
    NEWFALSE = 0x89,
    LONG1 = 0x8a,
    LONG4 = 0x8b,
    BINBYTES = b'B',
    SHORT_BINBYTES = b'C',
    SHORT_BINUNICODE = 0x8c,
    BINUNICODE8 = 0x8d,
    BINBYTES8 = 0x8e,
    EMPTY_SET = 0x8f,
    ADDITEMS = 0x90,
    FROZENSET = 0x91,
    NEWOBJ_EX = 0x92,
    STACK_GLOBAL = 0x93,
    MEMOIZE = 0x94,
    FRAME = 0x95,
    BYTEARRAY8 = 0x96,
    NEXT_BUFFER = 0x97,
    READONLY_BUFFER = 0x98,
}

impl<'a, 'p> Machine<'a, 'p> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!("pickle truncated: wanted {n} bytes at offset {} of {}", self.pos, self.data.len());
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    /// A length prefix, checked against the bytes left so that a corrupt
    /// length cannot make us allocate gigabytes.
    fn len_u64(&mut self, n: u64) -> Result<usize> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            bail!("pickle truncated: a length of {n} bytes at offset {} exceeds the {left} bytes left", self.pos);
        }
        Ok(n as usize)
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            bail!("pickle truncated: unterminated line at offset {}", self.pos);
        };
        let s = std::str::from_utf8(&rest[..nl]).map_err(|_| anyhow!("non-UTF-8 text at offset {}", self.pos))?;
        self.pos += nl + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<Value> {
        let at = self.pos;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| anyhow!("invalid UTF-8 string at offset {at}"))?;
        Ok(Value::Str(s.into()))
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| anyhow!("pickle stack underflow at offset {}", self.pos))
    }
    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| anyhow!("pickle stack underflow at offset {pos}"))
    }
    /// Pops everything above the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| anyhow!("pickle has no MARK at offset {}", self.pos))?;
        if m > self.stack.len() {
            bail!("pickle MARK lies above the stack at offset {}", self.pos);
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo.get(&i).cloned().ok_or_else(|| anyhow!("pickle memo entry {i} missing at offset {}", self.pos))
    }
    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.stack.last().cloned().ok_or_else(|| anyhow!("pickle stack underflow at offset {}", self.pos))?;
        self.memo.insert(i, v);
        Ok(())
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                opcode::PROTO => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        bail!("pickle protocol {proto} is newer than 5");
                    }
                }
                opcode::FRAME => {
                    self.u64()?; // FRAME: a length hint only
                }
                opcode::STOP => return self.pop(),
                opcode::MARK => self.marks.push(self.stack.len()),
                opcode::POP => {
                    self.pop()?;
                }
                opcode::POP_MARK => {
                    self.pop_mark()?;
                }
                opcode::DUP => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                opcode::NONE => self.stack.push(Value::None),
                opcode::NEWTRUE => self.stack.push(Value::Bool(true)),
                opcode::NEWFALSE => self.stack.push(Value::Bool(false)),
                opcode::BININT => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                opcode::BININT1 => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                opcode::BININT2 => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                opcode::LONG1 => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Int(long_from_le(b)?));
                }
                opcode::LONG4 => {
                    let n = self.u32()? as u64;
                    let n = self.len_u64(n)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Int(long_from_le(b)?));
                }
                opcode::INT => {
                    // Text INT; protocol 0 also writes booleans as I00/I01.
                    let s = self.line()?;
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(s.parse().map_err(|_| anyhow!("bad INT {s:?} at offset {at}"))?),
                    };
                    self.stack.push(v);
                }
                opcode::LONG => {
                    let s = self.line()?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    let v = s.parse().map_err(|_| anyhow!("LONG {s:?} at offset {at} does not fit 64 bits"))?;
                    self.stack.push(Value::Int(v));
                }
                opcode::BINFLOAT => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                    self.stack.push(Value::Float(v));
                }
                opcode::FLOAT => {
                    let s = self.line()?;
                    let v = s.parse().map_err(|_| anyhow!("bad FLOAT {s:?} at offset {at}"))?;
                    self.stack.push(Value::Float(v));
                }
                opcode::BINUNICODE => {
                    let n = self.u32()? as u64;
                    let n = self.len_u64(n)?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                opcode::SHORT_BINUNICODE => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                opcode::BINUNICODE8 => {
                    let n = self.u64()?;
                    let n = self.len_u64(n)?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                opcode::SHORT_BINBYTES => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                opcode::BINBYTES => {
                    let n = self.u32()? as u64;
                    let n = self.len_u64(n)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                opcode::BINBYTES8 | opcode::BYTEARRAY8 => {
                    let n = self.u64()?;
                    let n = self.len_u64(n)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                // Python 2 byte strings (numpy files written under Python 2):
                // kept as bytes.
                opcode::SHORT_BINSTRING => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                opcode::BINSTRING => {
                    let n = self.u32()? as u64;
                    let n = self.len_u64(n)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                opcode::EMPTY_TUPLE => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                opcode::TUPLE => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items.into()));
                }
                opcode::TUPLE1 | opcode::TUPLE2 | opcode::TUPLE3 => {
                    let n = (op - opcode::TUPLE1 + 1) as usize;
                    if self.stack.len() < n {
                        bail!("pickle stack underflow at offset {at}");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items.into()));
                }
                opcode::EMPTY_LIST => self.stack.push(Value::List(shared(Vec::new()))),
                opcode::LIST => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(shared(items)));
                }
                opcode::APPEND => {
                    let v = self.pop()?;
                    self.append(vec![v], at)?;
                }
                opcode::APPENDS => {
                    let items = self.pop_mark()?;
                    self.append(items, at)?;
                }
                opcode::EMPTY_DICT => self.stack.push(Value::Dict(shared(Vec::new()))),
                opcode::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items, at)?;
                    self.stack.push(Value::Dict(shared(pairs)));
                }
                opcode::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v], at)?;
                }
                opcode::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.set_items(items, at)?;
                }
                opcode::PUT => {
                    let s = self.line()?;
                    let i = s.parse().map_err(|_| anyhow!("bad PUT index {s:?} at offset {at}"))?;
                    self.memo_put(i)?;
                }
                opcode::BINPUT => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                opcode::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                opcode::MEMOIZE => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                opcode::GET => {
                    let s = self.line()?;
                    let i = s.parse().map_err(|_| anyhow!("bad GET index {s:?} at offset {at}"))?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                opcode::BINGET => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                opcode::LONG_BINGET => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                opcode::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(global(module, name)?));
                }
                opcode::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        bail!("STACK_GLOBAL at offset {at} expects two strings");
                    };
                    self.stack.push(Value::Global(global(module, name)?));
                }
                opcode::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args).map_err(|e| anyhow!("{e} (REDUCE at offset {at})"))?;
                    self.stack.push(v);
                }
                opcode::NEWOBJ => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = new_object(class, args).map_err(|e| anyhow!("{e} (NEWOBJ at offset {at})"))?;
                    self.stack.push(v);
                }
                opcode::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    build(&target, state).map_err(|e| anyhow!("{e} (BUILD at offset {at})"))?;
                }
                opcode::BINPERSID => {
                    let pid = self.pop()?;
                    let v = self.persistent(&pid, at)?;
                    self.stack.push(v);
                }
                opcode::PERSID => {
                    let s = self.line()?;
                    let v = self.persistent(&Value::Str(s.into()), at)?;
                    self.stack.push(v);
                }
                _ => bail!(
                    "pickle opcode {} (0x{op:02x}) at offset {at} is not supported by toe-pipe's safe unpickler",
                    opcode::name(op)
                ),
            }
        }
    }

    fn persistent(&mut self, pid: &Value, at: usize) -> Result<Value> {
        match self.persistent_load.as_mut() {
            Some(load) => load(pid).map_err(|e| anyhow!("{e} (persistent id at offset {at})")),
            None => bail!("unexpected persistent id at offset {at}: this kind of file has no external data"),
        }
    }

    fn append(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => bail!("APPEND(S) at offset {at} on a {}, not a list", other.type_name()),
        }
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        let pairs = pairs(items, at)?;
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    // Python keeps the first position of a repeated key and the last value.
                    match d.iter_mut().find(|(old, _)| same_key(old, &k)) {
                        Some(slot) => slot.1 = v,
                        None => d.push((k, v)),
                    }
                }
                Ok(())
            }
            other => bail!("SETITEM(S) at offset {at} on a {}, not a dict", other.type_name()),
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = callable else {
            bail!("cannot call a {}", callable.type_name());
        };
        let Value::Tuple(args) = args else {
            bail!("arguments of {g:?} are a {}, not a tuple", args.type_name());
        };
        reduce_global(&g, &args)
    }
}

fn global(module: &str, name: &str) -> Result<Global> {
    if let Some(g) = resolve_global(module, name) {
        return Ok(g);
    }
    if (module == "torch._utils" && name.starts_with("_rebuild_")) || (module == "torch" && name.ends_with("Storage")) {
        bail!(
            "`{module}.{name}` is not supported: toe-pipe reads dense tensors of the classic dtypes \
             (float16/32/64, bfloat16, int8-64, uint8, bool, complex), not sparse, quantized, \
             uint16-64 or float8 ones"
        );
    }
    bail!(
        "pickle global `{module}.{name}` is not allowed: toe-pipe's safe unpickler only rebuilds \
         numpy arrays and torch tensors and never runs code named by a file"
    )
}

/// Two dict keys are the same for the simple key types pickles use.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bytes(a), Value::Bytes(b)) => a == b,
        (Value::None, Value::None) => true,
        _ => false,
    }
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("odd number of items for a dict at offset {at}");
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Decodes a little-endian two's-complement integer (LONG1/LONG4).
fn long_from_le(b: &[u8]) -> Result<i64> {
    if b.is_empty() {
        return Ok(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    // Bytes past the eighth must only repeat the sign.
    if b.len() > 8 && b[8..].iter().any(|&x| x != fill) {
        bail!("integer of {} bytes does not fit 64 bits", b.len());
    }
    let mut buf = [fill; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    let v = i64::from_le_bytes(buf);
    if b.len() > 8 && (v < 0) != negative {
        bail!("integer of {} bytes does not fit 64 bits", b.len());
    }
    Ok(v)
}

fn int_arg(args: &[Value], i: usize, what: &str) -> Result<i64> {
    match args.get(i) {
        Some(Value::Int(v)) => Ok(*v),
        Some(v) => bail!("{what} is a {}, expected an int", v.type_name()),
        None => bail!("{what} missing"),
    }
}

fn int_tuple(v: Option<&Value>, what: &str) -> Result<Vec<i64>> {
    let items: Vec<Value> = match v {
        Some(Value::Tuple(t)) => t.to_vec(),
        Some(Value::List(l)) => l.borrow().clone(),
        Some(v) => bail!("{what} is a {}, expected a tuple of ints", v.type_name()),
        None => bail!("{what} missing"),
    };
    items
        .iter()
        .map(|x| match x {
            Value::Int(i) => Ok(*i),
            other => bail!("{what} holds a {}, expected ints", other.type_name()),
        })
        .collect()
}

/// Calls an allowed global. These are the only "function calls" a pickle can make.
fn reduce_global(g: &Global, args: &[Value]) -> Result<Value> {
    match g {
        Global::OrderedDict => match args {
            [] => Ok(Value::Dict(shared(Vec::new()))),
            [Value::List(items)] => {
                let mut out = Vec::new();
                for item in items.borrow().iter() {
                    match item {
                        Value::Tuple(kv) if kv.len() == 2 => out.push((kv[0].clone(), kv[1].clone())),
                        other => bail!("OrderedDict item is a {}, expected a (key, value) pair", other.type_name()),
                    }
                }
                Ok(Value::Dict(shared(out)))
            }
            _ => bail!("OrderedDict called with {} unexpected arguments", args.len()),
        },
        Global::CodecsEncode => match args {
            // Protocol 2 writes bytes as encode(latin-1 text, 'latin1').
            [Value::Str(s), Value::Str(enc)] if &**enc == "latin1" || &**enc == "latin-1" => {
                let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                let bytes = bytes.ok_or_else(|| anyhow!("_codecs.encode text is not latin-1"))?;
                Ok(Value::Bytes(bytes.into()))
            }
            _ => bail!("_codecs.encode is only allowed as encode(str, 'latin1')"),
        },
        Global::NumpyReconstruct => match args {
            [Value::Global(Global::NumpyNdarray), _shape, _tag] => Ok(Value::NumpyArray(shared(NumpyArray::default()))),
            _ => bail!("numpy _reconstruct is only allowed for numpy.ndarray"),
        },
        Global::NumpyDtype => match args {
            [Value::Str(code), ..] => {
                Ok(Value::NumpyDtype(shared(NumpyDtype { code: code.to_string(), byte_order: None })))
            }
            _ => bail!("numpy.dtype expects a type code string"),
        },
        Global::NumpyScalar => match args {
            [Value::NumpyDtype(d), Value::Bytes(b)] => numpy_scalar(&d.borrow(), b),
            _ => bail!("numpy scalar expects (dtype, bytes)"),
        },
        Global::RebuildTensorV2 => {
            if !(6..=7).contains(&args.len()) {
                bail!("_rebuild_tensor_v2 takes 6 or 7 arguments, got {}", args.len());
            }
            let storage = match &args[0] {
                Value::Storage(s) => s.clone(),
                other => bail!("_rebuild_tensor_v2 storage argument is a {}", other.type_name()),
            };
            let offset = int_arg(args, 1, "tensor storage offset")?;
            let size = int_tuple(args.get(2), "tensor size")?;
            let stride = int_tuple(args.get(3), "tensor stride")?;
            if size.len() != stride.len() {
                bail!("tensor size {size:?} and stride {stride:?} differ in length");
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage, offset, size, stride })))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => bail!("_rebuild_parameter expects a tensor"),
        },
        Global::RebuildFromTypeV2 => match args {
            [Value::Global(func), Value::Global(Global::TensorType), Value::Tuple(inner), _state] => {
                reduce_global(func, inner)
            }
            _ => bail!("_rebuild_from_type_v2 is only allowed for plain tensors and parameters"),
        },
        Global::JitPassThrough => match args.first() {
            Some(v) => Ok(v.clone()),
            None => bail!("torch.jit._pickle helper called without arguments"),
        },
        Global::TorchSize => match args {
            [t @ Value::Tuple(_)] => Ok(t.clone()),
            _ => bail!("torch.Size expects a tuple"),
        },
        Global::NumpyNdarray | Global::TensorType | Global::StorageType(_) | Global::ScriptClass(_) => {
            bail!("{g:?} cannot be called from a pickle here")
        }
    }
}

/// A numpy scalar from its dtype and raw bytes (only strings and plain numbers).
fn numpy_scalar(dtype: &NumpyDtype, b: &[u8]) -> Result<Value> {
    let big = dtype.byte_order.as_deref() == Some(">");
    let code = dtype.code.as_str();
    let arr = |n: usize| -> Result<[u8; 8]> {
        if b.len() != n {
            bail!("numpy scalar of dtype {code} has {} bytes, expected {n}", b.len());
        }
        let mut buf = [0u8; 8];
        if big {
            buf[..n].copy_from_slice(b);
            buf[..n].reverse();
        } else {
            buf[..n].copy_from_slice(b);
        }
        Ok(buf)
    };
    Ok(match code {
        c if c.starts_with('U') => Value::Str(decode_utf32(b, big)?.into()),
        "f8" => Value::Float(f64::from_le_bytes(arr(8)?)),
        "f4" => Value::Float(f32::from_le_bytes(arr(4)?[..4].try_into()?) as f64),
        "i8" => Value::Int(i64::from_le_bytes(arr(8)?)),
        "i4" => Value::Int(i32::from_le_bytes(arr(4)?[..4].try_into()?) as i64),
        "b1" => Value::Bool(arr(1)?[0] != 0),
        _ => bail!("numpy scalar of dtype {code} is not supported"),
    })
}

/// Decodes fixed-width UTF-32 text as numpy stores it, dropping trailing NULs.
pub fn decode_utf32(b: &[u8], big_endian: bool) -> Result<String> {
    if !b.len().is_multiple_of(4) {
        bail!("UTF-32 text of {} bytes is not a multiple of 4", b.len());
    }
    let mut s = String::with_capacity(b.len() / 4);
    for c in b.chunks_exact(4) {
        let c: [u8; 4] = c.try_into()?;
        let u = if big_endian { u32::from_be_bytes(c) } else { u32::from_le_bytes(c) };
        s.push(char::from_u32(u).ok_or_else(|| anyhow!("invalid code point U+{u:X} in UTF-32 text"))?);
    }
    s.truncate(s.trim_end_matches('\0').len());
    Ok(s)
}

fn new_object(class: Value, args: Value) -> Result<Value> {
    match (&class, &args) {
        (Value::Global(Global::ScriptClass(name)), Value::Tuple(a)) if a.is_empty() => {
            Ok(Value::ScriptObject(shared(ScriptObject { class: name.clone(), state: Value::None })))
        }
        (Value::Global(g), _) => bail!("cannot create an instance of {g:?}"),
        _ => bail!("cannot create an instance of a {}", class.type_name()),
    }
}

/// Applies `BUILD`'s state to an object.
fn build(target: &Value, state: Value) -> Result<()> {
    match target {
        Value::NumpyArray(arr) => {
            // (version, shape, dtype, is_fortran, data)
            let Value::Tuple(s) = &state else { bail!("numpy array state is a {}", state.type_name()) };
            let s: &[Value] = s;
            let (shape, dtype, fortran, data) = match s {
                [Value::Int(_), shape, dtype, fortran, data] => (shape, dtype, fortran, data),
                [shape, dtype, fortran, data] => (shape, dtype, fortran, data),
                _ => bail!("numpy array state has {} fields, expected 5", s.len()),
            };
            let mut a = arr.borrow_mut();
            a.shape = int_tuple(Some(shape), "numpy array shape")?;
            a.dtype = match dtype {
                Value::NumpyDtype(d) => Some(d.borrow().clone()),
                other => bail!("numpy array dtype is a {}", other.type_name()),
            };
            a.fortran_order = matches!(fortran, Value::Bool(true) | Value::Int(1));
            match data {
                Value::List(l) => a.objects = Some(l.borrow().clone()),
                Value::Bytes(b) => a.raw = Some(b.clone()),
                other => bail!("numpy array data is a {}", other.type_name()),
            }
            Ok(())
        }
        Value::NumpyDtype(d) => {
            // (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
            let Value::Tuple(s) = &state else { bail!("numpy dtype state is a {}", state.type_name()) };
            match s.get(1) {
                Some(Value::Str(order)) => d.borrow_mut().byte_order = Some(order.to_string()),
                _ => bail!("numpy dtype state lacks a byte order"),
            }
            if s.get(3).is_some_and(|names| !matches!(names, Value::None)) {
                bail!("numpy structured dtypes are not supported");
            }
            Ok(())
        }
        Value::ScriptObject(o) => {
            o.borrow_mut().state = state;
            Ok(())
        }
        // An OrderedDict's instance attributes, e.g. a state dict's `_metadata`
        // (per-module version numbers). They carry no tensors; drop them.
        Value::Dict(_) => Ok(()),
        other => bail!("cannot set the state of a {}", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_decoding() {
        assert_eq!(long_from_le(&[]).unwrap(), 0);
        assert_eq!(long_from_le(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_le(&[0x00, 0x80]).unwrap(), -32768);
        assert_eq!(long_from_le(&[0, 0, 0, 0, 1]).unwrap(), 1 << 32);
        assert_eq!(long_from_le(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), 1);
        assert!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]).is_err());
    }

    #[test]
    fn refuses_unknown_globals_and_opcodes() {
        let p = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
        let e = unpickle(p, "evil.pkl", None).unwrap_err().to_string();
        assert!(e.contains("evil.pkl") && e.contains("posix.system"), "{e}");
        let p = b"\x80\x02\x82\x01.";
        let e = unpickle(p, "ext.pkl", None).unwrap_err().to_string();
        assert!(e.contains("EXT1"), "{e}");
    }

    #[test]
    fn memo_shares_mutated_containers() {
        // d = {}; memo[0] = d; d['a'] = 1; then (d, d) from the memo.
        let p = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01sh\x00\x86.";
        let v = unpickle(p, "t", None).unwrap();
        let Value::Tuple(t) = v else { panic!("tuple expected") };
        let Value::Dict(d) = &t[1] else { panic!("dict expected") };
        assert_eq!(d.borrow().len(), 1);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let e = unpickle(b"\x80\x02X\xff\x00\x00\x00ab", "short.pkl", None).unwrap_err().to_string();
        assert!(e.contains("short.pkl") && e.contains("truncated"), "{e}");
    }
}
