//! Bad files give errors that name the file and what is wrong, never a
//! panic, and a malicious pickle never runs.

use crate::formats_util;

use std::io::Write;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use toe_pipe::formats::{
    load_pt, load_state_dict, load_tensor_pt, read_npy, read_npy_tensor, read_strings, save_pt, save_tensor_pt,
    write_npy, PtValue, ScriptModule,
};

use formats_util::{run_python, scratch};

/// The error's message (with its context chain) must name the file and
/// contain every `what`.
fn assert_error<T>(result: anyhow::Result<T>, path: &Path, what: &[&str]) {
    let Err(e) = result else { panic!("{} loaded without error", path.display()) };
    let msg = format!("{e:#}");
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "error does not name {name}: {msg}");
    for w in what {
        assert!(msg.contains(w), "error lacks {w:?}: {msg}");
    }
}

/// A zip laid out like a torch.save archive, with a hand-made pickle.
fn write_pt_zip(path: &Path, pkl: &[u8], records: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    for (name, data) in records {
        z.start_file(format!("archive/{name}"), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.start_file("archive/version", opts).unwrap();
    z.write_all(b"3\n").unwrap();
    z.finish().unwrap();
}

/// `_rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 4), 0, (n,), (1,), False, OrderedDict())`.
fn float_tensor_pickle(n: u8) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n".to_vec();
    p.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K");
    p.push(n);
    p.extend_from_slice(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.");
    p
}

#[test]
fn hand_made_archive_is_read() {
    // The fixture itself is valid when sizes agree, so the failures below
    // are caused by what each one changes.
    let dir = scratch();
    let p = dir.path().join("ok.pt");
    write_pt_zip(&p, &float_tensor_pickle(4), &[("data/0", &[0u8; 16])]);
    assert_eq!(load_tensor_pt(&p).unwrap().size(), [4]);
}

#[test]
fn broken_torch_archives() {
    let dir = scratch();
    let d = dir.path();

    let good = d.join("good.pt");
    save_tensor_pt(&good, &Tensor::ones([64, 64], (Kind::Float, Device::Cpu))).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.join("truncated.pt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(load_pt(&truncated), &truncated, &["zip"]);

    let text = d.join("notes.pt");
    std::fs::write(&text, "just some text\n").unwrap();
    assert_error(load_pt(&text), &text, &["not a PyTorch file"]);
    let empty = d.join("empty.pt");
    std::fs::write(&empty, "").unwrap();
    assert_error(load_pt(&empty), &empty, &["not a PyTorch file"]);

    let pickle_only = d.join("pickle_only.pt");
    std::fs::write(&pickle_only, b"\x80\x02K\x01.").unwrap();
    assert_error(load_pt(&pickle_only), &pickle_only, &["not a PyTorch file"]);

    let missing = d.join("missing_storage.pt");
    write_pt_zip(&missing, &float_tensor_pickle(4), &[]);
    assert_error(load_pt(&missing), &missing, &["archive/data/0", "missing"]);

    let short = d.join("short_storage.pt");
    write_pt_zip(&short, &float_tensor_pickle(4), &[("data/0", &[0u8; 8])]);
    assert_error(load_pt(&short), &short, &["truncated"]);

    let oob = d.join("out_of_bounds.pt");
    write_pt_zip(&oob, &float_tensor_pickle(9), &[("data/0", &[0u8; 16])]);
    assert_error(load_pt(&oob), &oob, &["reaches element 8", "has 4"]);

    let no_pkl = d.join("no_pickle.pt");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&no_pkl).unwrap());
    z.start_file("archive/other", zip::write::SimpleFileOptions::default()).unwrap();
    z.finish().unwrap();
    assert_error(load_pt(&no_pkl), &no_pkl, &["data.pkl"]);

    let bad_op = d.join("bad_opcode.pt");
    write_pt_zip(&bad_op, b"\x80\x02\x82\x01.", &[]);
    assert_error(load_pt(&bad_op), &bad_op, &["EXT1"]);

    let scalars = d.join("scalars.pt");
    save_pt(&scalars, &PtValue::Dict(vec![("epoch".into(), PtValue::Int(1))])).unwrap();
    assert_error(load_state_dict(&scalars), &scalars, &["no tensors"]);
    assert_error(load_tensor_pt(&scalars), &scalars, &["expected a single tensor"]);
    assert_error(ScriptModule::load(&scalars, Device::Cpu), &scalars, &["not a TorchScript archive"]);
}

/// Pickles that would run `os.system` in Python, inside an .npy object array
/// and inside a .pt archive, plus newer-dtype tensors we do not read.
#[test]
fn malicious_and_unsupported_pickles() {
    let dir = scratch();
    let d = dir.path();
    run_python(
        r#"
import sys, os, pickle, zipfile, numpy as np, torch
d = sys.argv[1]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(d, "pwned"),))
fmt = np.lib.format
with open(d + "/evil.npy", "wb") as f:
    fmt.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    pickle.dump(Evil(), f, protocol=2)
with zipfile.ZipFile(d + "/evil.pt", "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    z.writestr("archive/version", "3\n")
torch.save({"x": torch.zeros(3, dtype=torch.uint16)}, d + "/uint16.pt")
np.save(d + "/ints_object.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
"#,
        &[d],
    );
    let evil_npy = d.join("evil.npy");
    assert_error(read_strings(&evil_npy), &evil_npy, &["posix.system", "not allowed"]);
    let evil_pt = d.join("evil.pt");
    assert_error(load_pt(&evil_pt), &evil_pt, &["posix.system", "not allowed"]);
    assert!(!d.join("pwned").exists(), "the malicious pickle ran");

    let u16 = d.join("uint16.pt");
    assert_error(load_pt(&u16), &u16, &["_rebuild_tensor_v3", "not supported"]);
    let ints = d.join("ints_object.npy");
    assert_error(read_strings(&ints), &ints, &["element 0 is a int"]);
}

#[test]
fn broken_npy_files() {
    let dir = scratch();
    let d = dir.path();
    run_python(
        r#"
import sys, numpy as np
d = sys.argv[1]
np.save(d + "/complex.npy", np.zeros(3, dtype=np.complex64))
np.save(d + "/floats.npy", np.arange(1000, dtype=np.float32))
np.save(d + "/names.npy", np.array(["tench", "goldfish", "great white shark"]))
np.save(d + "/structured.npy", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]))
"#,
        &[d],
    );
    let complex = d.join("complex.npy");
    assert_error(read_npy_tensor(&complex), &complex, &["unsupported .npy dtype", "<c8"]);
    assert_error(read_strings(&complex), &complex, &["not strings"]);
    let floats = d.join("floats.npy");
    assert_error(read_strings(&floats), &floats, &["<f4", "not strings"]);
    assert_error(read_npy::<i64>(&floats), &floats, &["int64", "<f4"]);

    let cut = d.join("floats_cut.npy");
    std::fs::write(&cut, &std::fs::read(&floats).unwrap()[..2000]).unwrap();
    assert_error(read_npy::<f32>(&cut), &cut, &["cannot read"]);
    assert_error(read_npy_tensor(&cut), &cut, &["cannot read"]);
    let names_cut = d.join("names_cut.npy");
    let names = std::fs::read(d.join("names.npy")).unwrap();
    std::fs::write(&names_cut, &names[..names.len() - 10]).unwrap();
    assert_error(read_strings(&names_cut), &names_cut, &["truncated"]);

    let header_cut = d.join("header_cut.npy");
    std::fs::write(&header_cut, &names[..40]).unwrap();
    assert_error(read_strings(&header_cut), &header_cut, &["truncated .npy header"]);

    let not_npy = d.join("not.npy");
    std::fs::write(&not_npy, "hello, this is not numpy").unwrap();
    assert_error(read_strings(&not_npy), &not_npy, &["wrong magic"]);
    assert_error(read_npy_tensor(&not_npy), &not_npy, &["wrong magic"]);

    let structured = d.join("structured.npy");
    assert_error(read_npy_tensor(&structured), &structured, &["structured dtypes"]);

    let absent = d.join("absent.npy");
    assert_error(read_npy_tensor(&absent), &absent, &["cannot open"]);
    let unwritable = d.join("no_such_dir/out.npy");
    assert_error(write_npy(&unwritable, &ndarray::arr1(&[1.0f32])), &unwritable, &["cannot create"]);
}
