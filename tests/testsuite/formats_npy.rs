//! `.npy` round trips through the venv's numpy, both ways: numeric arrays of
//! every supported dtype and odd shapes, tensors, and string arrays (unicode,
//! bytes, pickled object arrays of several pickle protocols).

use crate::formats_util;

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use tch::{Kind, Tensor};
use toe_pipe::formats::{
    read_npy, read_npy_header, read_npy_tensor, read_strings, tensor_to_array, write_npy, write_npy_tensor,
    write_strings,
};

use formats_util::{run_python, scratch};

/// numpy writes arrays of every dtype and awkward layout; Rust reads each
/// and writes it back; numpy checks the copies are identical.
const NUMPY_ARRAYS: &str = r#"
import sys, os, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
arrays = {
    "f32_3d": rng.standard_normal((2, 3, 4)).astype(np.float32),
    "f64_2d": rng.standard_normal((5, 3)),
    "i64_1d": rng.integers(-2**62, 2**62, 7, dtype=np.int64),
    "i32_2d": rng.integers(-2**31, 2**31, (3, 3), dtype=np.int32),
    "u8_4d": rng.integers(0, 256, (2, 1, 3, 2), dtype=np.uint8),
    "bool_2d": rng.random((4, 5)) < 0.5,
    "i16_1d": np.arange(-5, 5, dtype=np.int16),
    "i8_1d": np.arange(-5, 5, dtype=np.int8),
    "f32_scalar": np.array(3.5, dtype=np.float32),
    "f32_empty": np.zeros((0, 4), dtype=np.float32),
    "f64_fortran": np.asfortranarray(rng.standard_normal((3, 4))),
    "f64_bigendian": rng.standard_normal((2, 3)).astype(">f8"),
}
mode = sys.argv[2]
if mode == "write":
    for k, a in arrays.items():
        np.save(os.path.join(d, k + ".npy"), a)
else:
    for k, a in arrays.items():
        for suffix in ("_nd", "_tensor"):
            b = np.load(os.path.join(d, k + suffix + ".npy"))
            assert b.shape == a.shape, (k, suffix, b.shape, a.shape)
            assert b.dtype.kind == a.dtype.kind and b.dtype.itemsize == a.dtype.itemsize, (k, suffix, b.dtype)
            assert np.array_equal(a, b), (k, suffix)
    print("ok", len(arrays))
"#;

fn copy_with<T: toe_pipe::formats::NpyElement>(src: &Path, dst: &Path) {
    let a: ArrayD<T> = read_npy(src).unwrap();
    write_npy(dst, &a).unwrap();
}

#[test]
fn numeric_arrays_round_trip_through_numpy() {
    let dir = scratch();
    let d = dir.path();
    run_python(NUMPY_ARRAYS, &[d, Path::new("write")]);
    let names = [
        "f32_3d",
        "f64_2d",
        "i64_1d",
        "i32_2d",
        "u8_4d",
        "bool_2d",
        "i16_1d",
        "i8_1d",
        "f32_scalar",
        "f32_empty",
        "f64_fortran",
        "f64_bigendian",
    ];
    for name in names {
        let src = d.join(format!("{name}.npy"));
        let nd = d.join(format!("{name}_nd.npy"));
        // Through ndarray, typed by the file's dtype.
        match &name[..name.find('_').unwrap()] {
            "f32" => copy_with::<f32>(&src, &nd),
            "f64" => copy_with::<f64>(&src, &nd),
            "i64" => copy_with::<i64>(&src, &nd),
            "i32" => copy_with::<i32>(&src, &nd),
            "i16" => copy_with::<i16>(&src, &nd),
            "i8" => copy_with::<i8>(&src, &nd),
            "u8" => copy_with::<u8>(&src, &nd),
            "bool" => copy_with::<bool>(&src, &nd),
            other => panic!("no type for {other}"),
        }
        // Through a tensor, whose kind follows the file.
        let t = read_npy_tensor(&src).unwrap();
        write_npy_tensor(&d.join(format!("{name}_tensor.npy")), &t).unwrap();
    }
    let out = run_python(NUMPY_ARRAYS, &[d, Path::new("check")]);
    assert_eq!(out.trim(), "ok 12");
}

#[test]
fn tensor_shapes_and_kinds() {
    let dir = scratch();
    let d = dir.path();
    run_python(NUMPY_ARRAYS, &[d, Path::new("write")]);
    let t = read_npy_tensor(&d.join("f32_3d.npy")).unwrap();
    assert_eq!((t.size(), t.kind()), (vec![2, 3, 4], Kind::Float));
    let t = read_npy_tensor(&d.join("f64_fortran.npy")).unwrap();
    assert_eq!((t.size(), t.kind()), (vec![3, 4], Kind::Double));
    let t = read_npy_tensor(&d.join("bool_2d.npy")).unwrap();
    assert_eq!(t.kind(), Kind::Bool);
    let t = read_npy_tensor(&d.join("f32_scalar.npy")).unwrap();
    assert_eq!((t.size(), t.double_value(&[])), (vec![], 3.5));
    let t = read_npy_tensor(&d.join("f32_empty.npy")).unwrap();
    assert_eq!(t.size(), [0, 4]);
    let h = read_npy_header(&d.join("f64_bigendian.npy")).unwrap();
    assert_eq!((h.descr.as_str(), h.shape.as_slice()), (">f8", &[2usize, 3][..]));
}

#[test]
fn non_contiguous_tensors_are_written_in_logical_order() {
    let dir = scratch();
    let d = dir.path();
    // arange(24).reshape(2,3,4) transposed, and a strided slice with an offset.
    let base = Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).reshape([2, 3, 4]);
    write_npy_tensor(&d.join("perm.npy"), &base.permute([2, 0, 1])).unwrap();
    write_npy_tensor(&d.join("slice.npy"), &base.select(0, 1).slice(1, 1, 4, 2)).unwrap();
    write_npy_tensor(&d.join("long.npy"), &base.select(0, 0).to_kind(Kind::Int64).tr()).unwrap();
    let out = run_python(
        r#"
import sys, numpy as np
d = sys.argv[1]
base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
assert np.array_equal(np.load(d + "/perm.npy"), base.transpose(2, 0, 1))
assert np.array_equal(np.load(d + "/slice.npy"), base[1][:, 1:4:2])
l = np.load(d + "/long.npy")
assert l.dtype == np.int64 and np.array_equal(l, base[0].astype(np.int64).T)
print("ok")
"#,
        &[d],
    );
    assert_eq!(out.trim(), "ok");
    // And back: the array has the tensor's values.
    let a = tensor_to_array::<f32>(&base.permute([2, 0, 1])).unwrap();
    assert_eq!(a.shape(), [4, 2, 3]);
    assert_eq!(a[IxDyn(&[3, 1, 2])], base.double_value(&[1, 2, 3]) as f32);
    assert!(tensor_to_array::<f64>(&base).is_err(), "kind mismatch must be an error");
}

const STRINGS: &[&str] = &[
    "tench",
    "great white shark",
    "",
    "crème brûlée",
    "日本語のテキスト",
    "emoji 🦈 and tab\tinside",
    "a fairly long string that is longer than the others, to set the width of the array",
];

/// numpy writes the same strings as unicode, big-endian unicode, bytes and
/// object arrays under several pickle protocols; Rust reads all of them.
#[test]
fn string_arrays_written_by_numpy() {
    let dir = scratch();
    let d = dir.path();
    let list = serde_json::to_string(STRINGS).unwrap();
    let list_path = d.join("strings.json");
    std::fs::write(&list_path, &list).unwrap();
    run_python(
        r#"
import sys, json, pickle, numpy as np
fmt = np.lib.format
d = sys.argv[1]
s = json.load(open(sys.argv[2], encoding="utf-8"))
np.save(d + "/unicode.npy", np.array(s))
np.save(d + "/unicode_be.npy", np.array(s).astype(">U90"))
np.save(d + "/unicode_2d.npy", np.array(s[:6]).reshape(2, 3))
ascii = [x for x in s if x.isascii()]
np.save(d + "/bytes.npy", np.array([x.encode() for x in ascii]))
obj = np.array(s, dtype=object)
for p in (2, 3, 4, 5):
    with open(d + f"/object_p{p}.npy", "wb") as f:
        fmt.write_array_header_1_0(f, fmt.header_data_from_array_1_0(obj))
        pickle.dump(obj, f, protocol=p)
    assert np.load(d + f"/object_p{p}.npy", allow_pickle=True).tolist() == s
np.save(d + "/object_npstr.npy", np.array([np.str_(x) for x in s], dtype=object), allow_pickle=True)
np.save(d + "/empty.npy", np.array([], dtype="<U1"))
"#,
        &[d, &list_path],
    );
    let expected: Vec<String> = STRINGS.iter().map(|s| s.to_string()).collect();
    for name in ["unicode", "unicode_be", "object_p2", "object_p3", "object_p4", "object_p5", "object_npstr"] {
        let got = read_strings(&d.join(format!("{name}.npy"))).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(got, expected, "{name}");
    }
    assert_eq!(read_strings(&d.join("unicode_2d.npy")).unwrap(), expected[..6]);
    let ascii: Vec<String> = expected.iter().filter(|s| s.is_ascii()).cloned().collect();
    assert_eq!(read_strings(&d.join("bytes.npy")).unwrap(), ascii);
    assert!(read_strings(&d.join("empty.npy")).unwrap().is_empty());
}

/// Rust writes strings; numpy reads them without allow_pickle.
#[test]
fn string_arrays_read_by_numpy() {
    let dir = scratch();
    let d = dir.path();
    write_strings(&d.join("s.npy"), STRINGS).unwrap();
    write_strings::<&str>(&d.join("empty.npy"), &[]).unwrap();
    std::fs::write(d.join("strings.json"), serde_json::to_string(STRINGS).unwrap()).unwrap();
    let out = run_python(
        r#"
import sys, json, numpy as np
d = sys.argv[1]
s = json.load(open(d + "/strings.json", encoding="utf-8"))
a = np.load(d + "/s.npy", allow_pickle=False)
assert a.dtype.kind == "U" and a.shape == (len(s),), a.dtype
assert a.tolist() == s, a.tolist()
e = np.load(d + "/empty.npy", allow_pickle=False)
assert e.shape == (0,) and e.dtype.kind == "U"
print("ok", a.dtype.str)
"#,
        &[d],
    );
    let longest = STRINGS.iter().map(|s| s.chars().count()).max().unwrap();
    assert_eq!(out.trim(), format!("ok <U{longest}"));
    // And Rust reads its own file back.
    assert_eq!(read_strings(&d.join("s.npy")).unwrap(), STRINGS);
    assert!(write_strings(&d.join("nul.npy"), &["bad\0"]).is_err());
}
