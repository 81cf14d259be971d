//! Typed op params: what a param may hold ([`ParamType`], [`ParamRange`],
//! allowed values), the Rust types a param can be read into
//! ([`ParamValueType`]), the [`op_params!`](crate::op_params) macro that
//! declares a params struct and derives its catalog entries, and the one
//! check ([`ParamInfo::validate`]) that both `toe-pipe check` and the worker
//! apply, so that what the CLI accepts is what the op reads.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::spec::ParamValue;

/// The type of a param, checked by `toe-pipe check` before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Bool,
    Int,
    /// A number; integers written in the file are read as floats.
    Float,
    Str,
    /// A list of strings.
    StrList,
    /// A list of integers.
    IntList,
    /// A list of numbers.
    FloatList,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Bool => "boolean",
            ParamType::Int => "integer",
            ParamType::Float => "float",
            ParamType::Str => "string",
            ParamType::StrList => "array of strings",
            ParamType::IntList => "array of integers",
            ParamType::FloatList => "array of numbers",
        }
    }

    /// The value in its canonical form if it has this type (integers become
    /// floats for float params, so `lr = 1` and `lr = 1.0` share a cache entry).
    pub fn coerce(self, v: &ParamValue) -> Option<ParamValue> {
        let float = |v: &ParamValue| v.as_f64().map(ParamValue::Float);
        let list = |v: &ParamValue, each: &dyn Fn(&ParamValue) -> Option<ParamValue>| match v {
            ParamValue::List(items) => items.iter().map(each).collect::<Option<Vec<_>>>().map(ParamValue::List),
            _ => None,
        };
        match self {
            ParamType::Bool => v.as_bool().map(ParamValue::Bool),
            ParamType::Int => v.as_i64().map(ParamValue::Int),
            ParamType::Float => float(v),
            ParamType::Str => v.as_str().map(|s| ParamValue::Str(s.to_owned())),
            ParamType::StrList => list(v, &|x| x.as_str().map(|s| ParamValue::Str(s.to_owned()))),
            ParamType::IntList => list(v, &|x| x.as_i64().map(ParamValue::Int)),
            ParamType::FloatList => list(v, &float),
        }
    }

    fn is_integer(self) -> bool {
        matches!(self, ParamType::Int | ParamType::IntList)
    }
}

/// The numbers a numeric param (or each element of a numeric list) may take.
/// Bounds are `f64` so that one catalog type covers integers and floats; the
/// integers toe-pipe's params hold are far below 2^53, where that is exact.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ParamRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// `min` itself is not allowed (e.g. a temperature must be more than 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub min_excluded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub max_excluded: bool,
}

impl ParamRange {
    /// The range of a Rust range expression over a param's number type.
    pub fn of<N: Number>(r: impl RangeBounds<N>) -> ParamRange {
        let bound = |b: Bound<&N>| match b {
            Bound::Included(x) => (Some(x.to_f64()), false),
            Bound::Excluded(x) => (Some(x.to_f64()), true),
            Bound::Unbounded => (None, false),
        };
        let ((min, min_excluded), (max, max_excluded)) = (bound(r.start_bound()), bound(r.end_bound()));
        ParamRange { min, min_excluded, max, max_excluded }
    }

    pub fn contains(&self, x: f64) -> bool {
        let above = match self.min {
            Some(m) if self.min_excluded => x > m,
            Some(m) => x >= m,
            None => true,
        };
        let below = match self.max {
            Some(m) if self.max_excluded => x < m,
            Some(m) => x <= m,
            None => true,
        };
        above && below && !x.is_nan()
    }

    /// "1 or more", "8 to 256", "at least 0 and less than 1": integers shown
    /// as integers when the param is an integer.
    pub fn describe(&self, integer: bool) -> String {
        let num =
            |x: f64| if integer { ParamValue::Int(x as i64).to_string() } else { ParamValue::Float(x).to_string() };
        match (self.min, self.max) {
            (None, None) => "any number".to_owned(),
            (Some(a), None) if self.min_excluded => format!("more than {}", num(a)),
            (Some(a), None) => format!("{} or more", num(a)),
            (None, Some(b)) if self.max_excluded => format!("less than {}", num(b)),
            (None, Some(b)) => format!("{} or less", num(b)),
            (Some(a), Some(b)) if !self.min_excluded && !self.max_excluded => format!("{} to {}", num(a), num(b)),
            (Some(a), Some(b)) => {
                let low =
                    if self.min_excluded { format!("more than {}", num(a)) } else { format!("at least {}", num(a)) };
                let high =
                    if self.max_excluded { format!("less than {}", num(b)) } else { format!("at most {}", num(b)) };
                format!("{low} and {high}")
            }
        }
    }

    /// This range narrowed to what the Rust type can hold (an unsigned
    /// param gets a minimum of 0 when its declaration gives none).
    fn within(mut self, natural: Option<ParamRange>) -> ParamRange {
        if let Some(n) = natural {
            if self.min.is_none() {
                (self.min, self.min_excluded) = (n.min, n.min_excluded);
            }
            if self.max.is_none() {
                (self.max, self.max_excluded) = (n.max, n.max_excluded);
            }
        }
        self
    }
}

/// Numbers that bound a param's range: the number types of params.
pub trait Number: Copy {
    fn to_f64(self) -> f64;
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
numbers!(i64, u64, usize, u32, f64);

/// The type of non-numeric params' bounds: it has no values, so a range
/// written on a bool or string param does not compile.
#[derive(Debug, Clone, Copy)]
pub enum NotANumber {}

impl Number for NotANumber {
    fn to_f64(self) -> f64 {
        match self {}
    }
}

/// `above(0.0)`: more than 0 (Rust's range syntax has no excluded start).
pub fn above<N>(x: N) -> (Bound<N>, Bound<N>) {
    (Bound::Excluded(x), Bound::Unbounded)
}

/// One param of an op, as the catalog describes it. `default: None` means
/// the param is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub doc: String,
    /// The numbers allowed (for list params: in each element).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ParamRange>,
    /// The strings allowed (enum params); empty: any string.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// For a param added to an op after nodes already ran with it: the value
    /// that gives the op's results from before the param existed (declared
    /// with `#[implicit(..)]`). A node at this value leaves the param out of
    /// its params, and so out of its action key: adding the param kept the
    /// keys, and the cached results, of every node that does not use it. A
    /// param absent from a job has this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<ParamValue>,
}

/// Why a value does not fit a param.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamProblem {
    /// Not of the param's type at all.
    Type,
    /// A number (or an element of a list) outside the range.
    Range,
    /// A string (or an element of a list) that is not one of the choices.
    Choice,
}

impl ParamInfo {
    /// The value in canonical form (see [`ParamType::coerce`]) if it fits
    /// this param: its type, range and allowed values. `toe-pipe check` and
    /// the worker both call this, so they accept the same values.
    pub fn validate(&self, v: &ParamValue) -> Result<ParamValue, ParamProblem> {
        let v = self.ty.coerce(v).ok_or(ParamProblem::Type)?;
        let items = match &v {
            ParamValue::List(items) => items.as_slice(),
            one => std::slice::from_ref(one),
        };
        for item in items {
            if let (Some(range), Some(x)) = (&self.range, item.as_f64()) {
                if !range.contains(x) {
                    return Err(ParamProblem::Range);
                }
            }
            if let (false, Some(s)) = (self.choices.is_empty(), item.as_str()) {
                if !self.choices.iter().any(|c| c == s) {
                    return Err(ParamProblem::Choice);
                }
            }
        }
        Ok(v)
    }

    /// What the param allows beyond its type, for messages and `toe-pipe
    /// ops`: "1 or more", "one of "fp32", "fp16", "bf16"".
    pub fn allowed(&self) -> Option<String> {
        if !self.choices.is_empty() {
            let quoted: Vec<String> = self.choices.iter().map(|c| format!("{c:?}")).collect();
            return Some(format!("one of {}", quoted.join(", ")));
        }
        self.range.map(|r| r.describe(self.ty.is_integer()))
    }

    /// Whether `v` (canonical, as [`validate`](Self::validate) returns it)
    /// is the param's implicit value, which nodes leave out of their params.
    pub fn is_implicit(&self, v: &ParamValue) -> bool {
        self.implicit.as_ref().and_then(|i| self.validate(i).ok()).is_some_and(|i| &i == v)
    }

    /// "must be an integer, found string "2"", "is out of range (allowed: 1
    /// or more)": the end of a message that starts with the param and value.
    pub fn problem_text(&self, problem: &ParamProblem, v: &ParamValue) -> String {
        let allowed = self.allowed().unwrap_or_default();
        match problem {
            ParamProblem::Type => format!("must be {}, found {} {v}", with_article(self.ty.name()), v.type_name()),
            ParamProblem::Range => format!("is out of range (allowed: {allowed})"),
            ParamProblem::Choice => format!("is not allowed (allowed: {allowed})"),
        }
    }
}

/// The param or port name of a struct field: a raw identifier
/// (`r#where`) names the port `where`.
pub fn field_name(field: &'static str) -> &'static str {
    field.strip_prefix("r#").unwrap_or(field)
}

/// "an integer", "a string".
pub fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {noun}")
}

/// A Rust type a param can be read into: its catalog type, the range its
/// values have anyway (unsigned: 0 or more), its allowed strings (enums),
/// and the conversions from and to a param value.
pub trait ParamValueType: Sized {
    const TYPE: ParamType;
    /// The number type a range on this param is written in.
    type Num: Number;
    fn natural_range() -> Option<ParamRange> {
        None
    }
    fn choices() -> Vec<String> {
        Vec::new()
    }
    fn to_value(&self) -> ParamValue;
    /// `None` if the (validated) value does not convert.
    fn from_value(v: &ParamValue) -> Option<Self>;
}

macro_rules! integer_params {
    ($($t:ty: $natural:expr),*) => {$(
        impl ParamValueType for $t {
            const TYPE: ParamType = ParamType::Int;
            type Num = $t;
            fn natural_range() -> Option<ParamRange> {
                $natural
            }
            fn to_value(&self) -> ParamValue {
                ParamValue::Int(*self as i64)
            }
            fn from_value(v: &ParamValue) -> Option<Self> {
                v.as_i64().and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
integer_params!(i64: None, u64: Some(ParamRange::of(0u64..)), usize: Some(ParamRange::of(0usize..)), u32: Some(ParamRange::of(0u32..=u32::MAX)));

impl ParamValueType for f64 {
    const TYPE: ParamType = ParamType::Float;
    type Num = f64;
    fn to_value(&self) -> ParamValue {
        ParamValue::Float(*self)
    }
    fn from_value(v: &ParamValue) -> Option<Self> {
        v.as_f64()
    }
}

impl ParamValueType for bool {
    const TYPE: ParamType = ParamType::Bool;
    type Num = NotANumber;
    fn to_value(&self) -> ParamValue {
        ParamValue::Bool(*self)
    }
    fn from_value(v: &ParamValue) -> Option<Self> {
        v.as_bool()
    }
}

impl ParamValueType for String {
    const TYPE: ParamType = ParamType::Str;
    type Num = NotANumber;
    fn to_value(&self) -> ParamValue {
        ParamValue::Str(self.clone())
    }
    fn from_value(v: &ParamValue) -> Option<Self> {
        v.as_str().map(str::to_owned)
    }
}

/// Lists of the scalar types above; a range or choices apply to each element.
macro_rules! list_params {
    ($($t:ty: $ty:expr),*) => {$(
        impl ParamValueType for Vec<$t> {
            const TYPE: ParamType = $ty;
            type Num = <$t as ParamValueType>::Num;
            fn natural_range() -> Option<ParamRange> {
                <$t>::natural_range()
            }
            fn to_value(&self) -> ParamValue {
                ParamValue::List(self.iter().map(ParamValueType::to_value).collect())
            }
            fn from_value(v: &ParamValue) -> Option<Self> {
                match v {
                    ParamValue::List(items) => items.iter().map(<$t>::from_value).collect(),
                    _ => None,
                }
            }
        }
    )*};
}
list_params!(String: ParamType::StrList, i64: ParamType::IntList, usize: ParamType::IntList, f64: ParamType::FloatList);

/// An enum param type ([`param_enum!`](crate::param_enum) implements it):
/// a list of its values is a param too, each element one of the spellings.
pub trait EnumParam: ParamValueType {}

impl<T: EnumParam> ParamValueType for Vec<T> {
    const TYPE: ParamType = ParamType::StrList;
    type Num = NotANumber;
    fn choices() -> Vec<String> {
        T::choices()
    }
    fn to_value(&self) -> ParamValue {
        ParamValue::List(self.iter().map(ParamValueType::to_value).collect())
    }
    fn from_value(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::List(items) => items.iter().map(T::from_value).collect(),
            _ => None,
        }
    }
}

/// A field of a params struct: one param (a [`ParamValueType`]) or a group
/// of params declared with [`op_params!`](crate::op_params), whose params
/// join the struct's under their own names (as a shared `Threads`).
pub trait ParamField: Sized {
    fn declare(
        out: &mut Vec<ParamInfo>,
        name: &str,
        doc: String,
        default: Option<Self>,
        range: Option<ParamRange>,
        implicit: Option<Self>,
    );
    fn read(r: &mut ParamReader, name: &str) -> anyhow::Result<Self>;
}

impl<T: ParamValueType> ParamField for T {
    fn declare(
        out: &mut Vec<ParamInfo>,
        name: &str,
        doc: String,
        default: Option<Self>,
        range: Option<ParamRange>,
        implicit: Option<Self>,
    ) {
        let range = match range {
            Some(r) => Some(r.within(T::natural_range())),
            None => T::natural_range(),
        };
        out.push(ParamInfo {
            name: name.to_owned(),
            ty: T::TYPE,
            default: default.map(|d| d.to_value()),
            doc,
            range,
            choices: T::choices(),
            implicit: implicit.map(|v| v.to_value()),
        });
    }
    fn read(r: &mut ParamReader, name: &str) -> anyhow::Result<Self> {
        let v = r.values.remove(name);
        match v.as_ref().and_then(T::from_value) {
            Some(x) => Ok(x),
            // validate() accepted the value for this param's declaration,
            // which this type wrote; so this is a bug in a ParamValueType.
            None => bail!(
                "node {}: param {name} = {} cannot be read as {}",
                r.node,
                v.map_or("nothing".into(), |v| v.to_string()),
                std::any::type_name::<T>()
            ),
        }
    }
}

/// A params struct or group: its catalog entries and how it is read.
/// Implemented by [`op_params!`](crate::op_params); `()` is "no params".
pub trait ParamSet: Sized {
    fn declare_all(out: &mut Vec<ParamInfo>);
    fn read_all(r: &mut ParamReader) -> anyhow::Result<Self>;

    /// The catalog entries, in declaration order.
    fn infos() -> Vec<ParamInfo> {
        let mut out = Vec::new();
        Self::declare_all(&mut out);
        out
    }

    /// Read a node's params: every problem (an unknown or missing param, a
    /// value of the wrong type, out of range or not allowed) is reported,
    /// naming the node and the param, before the op starts any work.
    fn from_params(node: &str, params: &BTreeMap<String, ParamValue>) -> anyhow::Result<Self> {
        let infos = Self::infos();
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        for name in params.keys().filter(|k| !infos.iter().any(|i| &i.name == *k)) {
            let known: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
            problems.push(format!("node {node}: unknown param `{name}` (the op's params: {})", known.join(", ")));
        }
        for info in &infos {
            // A param left out of a job is at its implicit value, if it has one.
            let Some(v) = params.get(&info.name).or(info.implicit.as_ref()).or(info.default.as_ref()) else {
                problems.push(format!("node {node}: param {} is required ({})", info.name, info.doc));
                continue;
            };
            match info.validate(v) {
                Ok(v) => {
                    values.insert(info.name.clone(), v);
                }
                Err(p) => problems.push(format!("node {node}: param {} = {v} {}", info.name, info.problem_text(&p, v))),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Self::read_all(&mut ParamReader { node, values })
    }
}

impl ParamSet for () {
    fn declare_all(_: &mut Vec<ParamInfo>) {}
    fn read_all(_: &mut ParamReader) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The validated params of one node while a [`ParamSet`] takes its fields.
pub struct ParamReader<'a> {
    node: &'a str,
    values: BTreeMap<String, ParamValue>,
}

/// Declare an enum param type: each variant with its spelling in pipeline
/// files. The enum gets `name()` and `Display` (that spelling), and the
/// catalog lists the spellings as the param's allowed values.
///
/// ```ignore
/// param_enum! {
///     /// Arithmetic precision of inference.
///     pub enum Precision { Fp32 = "fp32", Fp16 = "fp16", Bf16 = "bf16" }
/// }
/// ```
#[macro_export]
macro_rules! param_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[doc = $doc:literal])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[doc = $doc])* $variant,)*
        }
        impl $name {
            /// The spelling in pipeline files.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
        impl $crate::ops::EnumParam for $name {}
        impl $crate::ops::ParamValueType for $name {
            const TYPE: $crate::ops::ParamType = $crate::ops::ParamType::Str;
            type Num = $crate::ops::NotANumber;
            fn choices() -> Vec<String> {
                vec![$($text.to_owned()),*]
            }
            fn to_value(&self) -> $crate::spec::ParamValue {
                $crate::spec::ParamValue::Str(self.name().to_owned())
            }
            fn from_value(v: &$crate::spec::ParamValue) -> Option<Self> {
                match v.as_str()? {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

/// Declare an op's params (or a group of params that several ops share) as
/// a struct. Each field is one param, read into its Rust type, with its doc
/// comment as the catalog's description, an optional default (`= value`;
/// without one the param is required) and an optional `#[range(..)]` of
/// allowed numbers (Rust range syntax over the field's number type, or
/// `above(x)` for "more than x"). A param added to an op that nodes already
/// use gets `#[implicit(value)]` (after any range): the value that gives the
/// op's results from before the param existed, which nodes at it leave out
/// of their action keys ([`ParamInfo::implicit`]). A field whose type is
/// itself declared with `op_params!` is a group: its params join this
/// struct's. The catalog that
/// `toe-pipe ops` prints and `toe-pipe check` checks against is derived from
/// this declaration.
///
/// ```ignore
/// op_params! {
///     pub struct Params {
///         /// strings per forward pass
///         #[range(1..)]
///         batch_size: usize = 256,
///         /// shared: `precision`
///         precision: PrecisionParam,
///     }
/// }
/// ```
#[macro_export]
macro_rules! op_params {
    (@default $ty:ty) => { None };
    (@default $ty:ty, $default:expr) => { Some($default) };
    (@range $ty:ty) => { None };
    (@range $ty:ty, $range:expr) => {{
        #[allow(unused_imports)]
        use $crate::ops::above;
        Some($crate::ops::ParamRange::of::<<$ty as $crate::ops::ParamValueType>::Num>($range))
    }};
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[range($range:expr)])?
                $(#[implicit($implicit:expr)])?
                $field:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }
        impl $crate::ops::ParamSet for $name {
            fn declare_all(out: &mut Vec<$crate::ops::ParamInfo>) {
                $(
                    let doc: Vec<&str> = vec![$($doc.trim()),*];
                    let default: Option<$ty> = $crate::op_params!(@default $ty $(, $default)?);
                    let implicit: Option<$ty> = $crate::op_params!(@default $ty $(, $implicit)?);
                    <$ty as $crate::ops::ParamField>::declare(
                        out,
                        $crate::ops::field_name(stringify!($field)),
                        doc.join(" "),
                        default,
                        $crate::op_params!(@range $ty $(, $range)?),
                        implicit,
                    );
                )*
            }
            fn read_all(r: &mut $crate::ops::ParamReader) -> $crate::__anyhow::Result<Self> {
                Ok($name { $($field: <$ty as $crate::ops::ParamField>::read(r, $crate::ops::field_name(stringify!($field)))?,)* })
            }
        }
        impl $crate::ops::ParamField for $name {
            fn declare(out: &mut Vec<$crate::ops::ParamInfo>, _: &str, _: String, _: Option<Self>, _: Option<$crate::ops::ParamRange>, _: Option<Self>) {
                <$name as $crate::ops::ParamSet>::declare_all(out)
            }
            fn read(r: &mut $crate::ops::ParamReader, _: &str) -> $crate::__anyhow::Result<Self> {
                <$name as $crate::ops::ParamSet>::read_all(r)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::param_enum! {
        enum Colour { Red = "red", Dark = "dark_blue" }
    }

    crate::op_params! {
        struct Group {
            /// shared
            #[range(0..)]
            threads: i64 = 1,
        }
    }

    crate::op_params! {
        struct Params {
            /// items per batch,
            /// written over two lines
            #[range(1..)]
            batch_size: usize = 256,
            #[range(above(0.0))]
            temperature: f64 = 1.0,
            #[range(0.0..1.0)]
            fraction: f64 = 0.1,
            colour: Colour = Colour::Red,
            names: Vec<String>,
            group: Group,
        }
    }

    fn params(pairs: &[(&str, ParamValue)]) -> BTreeMap<String, ParamValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn coercion_is_canonical() {
        assert_eq!(ParamType::Float.coerce(&ParamValue::Int(1)), Some(ParamValue::Float(1.0)));
        assert_eq!(ParamType::Int.coerce(&ParamValue::Float(1.0)), None);
        assert_eq!(
            ParamType::FloatList.coerce(&ParamValue::List(vec![ParamValue::Int(1), ParamValue::Float(0.5)])),
            Some(ParamValue::List(vec![ParamValue::Float(1.0), ParamValue::Float(0.5)]))
        );
        assert_eq!(ParamType::StrList.coerce(&ParamValue::List(vec![ParamValue::Int(1)])), None);
    }

    #[test]
    fn the_catalog_comes_from_the_declaration() {
        let infos = Params::infos();
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["batch_size", "temperature", "fraction", "colour", "names", "threads"]);
        assert_eq!(infos[0].doc, "items per batch, written over two lines");
        assert_eq!((infos[0].ty, infos[0].default.clone()), (ParamType::Int, Some(ParamValue::Int(256))));
        assert_eq!(infos[0].allowed().unwrap(), "1 or more");
        assert_eq!(infos[1].allowed().unwrap(), "more than 0.0");
        assert_eq!(infos[2].allowed().unwrap(), "at least 0.0 and less than 1.0");
        assert_eq!((infos[3].ty, infos[3].default.clone()), (ParamType::Str, Some(ParamValue::Str("red".into()))));
        assert_eq!(infos[3].allowed().unwrap(), "one of \"red\", \"dark_blue\"");
        assert_eq!((infos[4].ty, infos[4].default.clone()), (ParamType::StrList, None));
        assert_eq!(infos[5].allowed().unwrap(), "0 or more");
        // A catalog round-trips through JSON (the CLI reads it from the worker).
        let json = serde_json::to_string(&infos).unwrap();
        assert_eq!(serde_json::from_str::<Vec<ParamInfo>>(&json).unwrap(), infos);
    }

    #[test]
    fn reading_applies_defaults_and_checks_everything_once() {
        let names = ParamValue::List(vec![ParamValue::Str("a".into())]);
        let p = Params::from_params(
            "n",
            &params(&[("names", names.clone()), ("colour", ParamValue::Str("dark_blue".into()))]),
        )
        .unwrap();
        assert_eq!(
            (p.batch_size, p.temperature, p.fraction, p.colour, p.group.threads),
            (256, 1.0, 0.1, Colour::Dark, 1)
        );
        assert_eq!(p.names, ["a"]);
        let p = Params::from_params("n", &params(&[("names", names.clone()), ("temperature", ParamValue::Int(2))]))
            .unwrap();
        assert_eq!(p.temperature, 2.0);

        let err = |pairs: &[(&str, ParamValue)]| Params::from_params("embed", &params(pairs)).unwrap_err().to_string();
        let e = err(&[("names", names.clone()), ("batch_size", ParamValue::Int(0))]);
        assert_eq!(e, "node embed: param batch_size = 0 is out of range (allowed: 1 or more)");
        let e = err(&[("names", names.clone()), ("temperature", ParamValue::Float(0.0))]);
        assert_eq!(e, "node embed: param temperature = 0.0 is out of range (allowed: more than 0.0)");
        let e = err(&[("names", names.clone()), ("colour", ParamValue::Str("green".into()))]);
        assert_eq!(e, "node embed: param colour = \"green\" is not allowed (allowed: one of \"red\", \"dark_blue\")");
        let e = err(&[("names", names.clone()), ("threads", ParamValue::Int(-1))]);
        assert_eq!(e, "node embed: param threads = -1 is out of range (allowed: 0 or more)");
        let e = err(&[("batch_size", ParamValue::Str("2".into())), ("nmes", names)]);
        assert!(e.contains("node embed: unknown param `nmes` (the op's params: batch_size, "), "{e}");
        assert!(e.contains("node embed: param batch_size = \"2\" must be an integer, found string \"2\""), "{e}");
        assert!(e.contains("node embed: param names is required"), "{e}");
    }

    crate::op_params! {
        struct Grown {
            /// colours, added later; nodes from before behave as ["red"]
            #[implicit(vec![Colour::Red])]
            colours: Vec<Colour> = vec![Colour::Red],
            /// added later too
            #[range(1..)]
            #[implicit(3)]
            k: usize = 5,
        }
    }

    #[test]
    fn lists_of_enums_and_implicit_values() {
        let infos = Grown::infos();
        assert_eq!(
            (infos[0].ty, infos[0].allowed().unwrap()),
            (ParamType::StrList, "one of \"red\", \"dark_blue\"".into())
        );
        let red = ParamValue::List(vec![ParamValue::Str("red".into())]);
        assert_eq!(infos[0].implicit, Some(red.clone()));
        assert!(infos[0].is_implicit(&red));
        assert!(!infos[1].is_implicit(&ParamValue::Int(5)) && infos[1].is_implicit(&ParamValue::Int(3)));
        // A job without the params: their implicit values, not the defaults.
        let p = Grown::from_params("n", &params(&[])).unwrap();
        assert_eq!((p.colours, p.k), (vec![Colour::Red], 3));
        let both = ParamValue::List(vec![ParamValue::Str("dark_blue".into()), ParamValue::Str("red".into())]);
        let p = Grown::from_params("n", &params(&[("colours", both), ("k", ParamValue::Int(5))])).unwrap();
        assert_eq!((p.colours, p.k), (vec![Colour::Dark, Colour::Red], 5));
        let bad = ParamValue::List(vec![ParamValue::Str("green".into())]);
        let e = Grown::from_params("n", &params(&[("colours", bad)])).unwrap_err().to_string();
        assert_eq!(e, "node n: param colours = [\"green\"] is not allowed (allowed: one of \"red\", \"dark_blue\")");
    }

    #[test]
    fn ranges_apply_to_each_element_of_a_list() {
        let info = ParamInfo {
            name: "layers".into(),
            ty: ParamType::IntList,
            default: None,
            doc: String::new(),
            range: Some(ParamRange::of(1i64..)),
            choices: Vec::new(),
            implicit: None,
        };
        let list = |v: &[i64]| ParamValue::List(v.iter().map(|&i| ParamValue::Int(i)).collect());
        assert!(info.validate(&list(&[1, 2])).is_ok());
        assert_eq!(info.validate(&list(&[1, 0])), Err(ParamProblem::Range));
        assert_eq!(ParamRange::of(8usize..=256).describe(true), "8 to 256");
    }
}
