//! `.pt` round trips through the venv's PyTorch, both ways: bare tensors,
//! state dicts, nested checkpoints, odd layouts (transposed, sliced, shared
//! storages, 0-d, empty), many dtypes, the legacy format, and TorchScript.

use crate::formats_util;

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use toe_pipe::formats::{
    detect_kind, is_torchscript, load_pt, load_state_dict, load_tensor_pt, save_nested_state_dicts_pt, save_pt,
    save_state_dict_pt, save_tensor_pt, PtValue, ScriptModule, TorchFileKind,
};

use formats_util::{run_python, scratch};

/// The objects PyTorch saves for Rust to read. Shared by the writer and the
/// checker (which compares what Rust wrote back with these).
const TORCH_OBJECTS: &str = r#"
import sys, collections, torch
torch.manual_seed(0)
d, mode = sys.argv[1], sys.argv[2]

def objects():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        net[1].running_mean.uniform_()
        net[1].num_batches_tracked += 7
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    kinds = {
        "f16": torch.randn(3, 4).half(), "bf16": torch.randn(3, 4).bfloat16(), "f64": torch.randn(2, 2).double(),
        "i64": torch.tensor([-2**62, 0, 2**62]), "i32": torch.tensor([-7, 7], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16), "i8": torch.tensor([-100, 100], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "c64": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
    }
    layouts = {
        "transposed": base.t(), "slice": base[2:5], "column": base[:, 3], "strided": base[1::2, ::3],
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "empty_slice": base[6:],
    }
    shared = {"whole": base, "view": base[1], "again": base}
    return {
        "bare": torch.randn(5, 7),
        "state_dict": net.state_dict(),
        "nested": {"net": net.state_dict(), "epoch": 3, "lr": 0.001, "name": "zoc", "flags": [True, None],
                   "opt": {0: {"step": 5}}},
        "kinds": kinds,
        "layouts": layouts,
        "shared": shared,
        "parameter": {"p": torch.nn.Parameter(torch.ones(2, 3))},
    }

def same(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(map(str, a.keys())) == list(b.keys()), (path, list(a.keys()), list(b.keys()))
        for k in a:
            same(a[k], b[str(k)], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}.{i}")
    else:
        assert a == b and type(a) == type(b), (path, a, b)

obj = objects()
if mode == "write":
    for k, v in obj.items():
        torch.save(v, f"{d}/{k}.pt")
    torch.save(obj["nested"], f"{d}/legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(obj["layouts"], f"{d}/legacy_layouts.pt", _use_new_zipfile_serialization=False)
    torch.save(obj["kinds"], f"{d}/protocol4.pt", pickle_protocol=4)
else:
    # What Rust wrote back, opened with the safe loader PyTorch uses by default.
    for k, v in obj.items():
        back = torch.load(f"{d}/{k}_back.pt", weights_only=True)
        if k == "parameter":
            v = {"p": v["p"].detach()}
        same(v, back, k)
    same(obj["nested"], torch.load(f"{d}/legacy_back.pt", weights_only=True), "legacy")
    same(obj["layouts"], torch.load(f"{d}/legacy_layouts_back.pt", weights_only=True), "legacy_layouts")
    # A state dict written by Rust loads into the module, strictly, and maps.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    net.load_state_dict(torch.load(f"{d}/state_dict_back.pt", weights_only=True))
    same(obj["state_dict"], torch.load(f"{d}/state_dict_back.pt", mmap=True, weights_only=True), "mmap")
    assert type(torch.load(f"{d}/state_dict_back.pt")) is collections.OrderedDict
    print("ok")
"#;

#[test]
fn python_files_round_trip_through_rust() {
    let dir = scratch();
    let d = dir.path();
    run_python(TORCH_OBJECTS, &[d, Path::new("write")]);
    for name in [
        "bare",
        "state_dict",
        "nested",
        "kinds",
        "layouts",
        "shared",
        "parameter",
        "legacy",
        "legacy_layouts",
        "protocol4",
    ] {
        let src = d.join(format!("{name}.pt"));
        let value = load_pt(&src).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        save_pt(&d.join(format!("{name}_back.pt")), &value).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    assert_eq!(run_python(TORCH_OBJECTS, &[d, Path::new("check")]).trim(), "ok");
}

#[test]
fn loaded_values_have_the_saved_structure() {
    let dir = scratch();
    let d = dir.path();
    run_python(TORCH_OBJECTS, &[d, Path::new("write")]);
    assert_eq!(detect_kind(&d.join("bare.pt")).unwrap(), TorchFileKind::TorchSave);
    assert_eq!(detect_kind(&d.join("legacy.pt")).unwrap(), TorchFileKind::LegacyTorchSave);
    assert_eq!(load_tensor_pt(&d.join("bare.pt")).unwrap().size(), [5, 7]);

    // Nested checkpoint: keys flattened with dots, non-tensors skipped.
    for file in ["nested.pt", "legacy.pt"] {
        let sd = load_state_dict(&d.join(file)).unwrap();
        let names: Vec<&str> = sd.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "net.0.weight",
                "net.0.bias",
                "net.1.weight",
                "net.1.bias",
                "net.1.running_mean",
                "net.1.running_var",
                "net.1.num_batches_tracked",
                "net.3.weight",
                "net.3.bias"
            ],
            "{file}"
        );
        let batches = &sd[6].1;
        assert_eq!((batches.kind(), batches.int64_value(&[])), (Kind::Int64, 7));
        let value = load_pt(&d.join(file)).unwrap();
        assert!(matches!(value.get("epoch"), Some(PtValue::Int(3))));
        assert!(matches!(value.get("lr"), Some(PtValue::Float(x)) if *x == 0.001));
        assert!(matches!(value.get("name"), Some(PtValue::Str(s)) if s == "zoc"));
        assert!(matches!(value.get("opt").and_then(|o| o.get("0")).and_then(|o| o.get("step")), Some(PtValue::Int(5))));
    }

    let kinds: HashMap<String, Tensor> = load_state_dict(&d.join("kinds.pt")).unwrap().into_iter().collect();
    let expect = [
        ("f16", Kind::Half),
        ("bf16", Kind::BFloat16),
        ("f64", Kind::Double),
        ("i64", Kind::Int64),
        ("i32", Kind::Int),
        ("i16", Kind::Int16),
        ("i8", Kind::Int8),
        ("u8", Kind::Uint8),
        ("bool", Kind::Bool),
        ("c64", Kind::ComplexFloat),
    ];
    for (k, kind) in expect {
        assert_eq!(kinds[k].kind(), kind, "{k}");
    }
    assert_eq!(kinds["i64"].int64_value(&[0]), -(1i64 << 62));

    let layouts: HashMap<String, Tensor> = load_state_dict(&d.join("layouts.pt")).unwrap().into_iter().collect();
    let base = Tensor::arange(60, (Kind::Float, Device::Cpu)).reshape([6, 10]);
    assert!(layouts["transposed"].equal(&base.tr()));
    assert_eq!(layouts["transposed"].stride(), [1, 10], "views keep PyTorch's strides");
    assert!(layouts["slice"].equal(&base.narrow(0, 2, 3)));
    assert_eq!(layouts["slice"].storage_offset(), 20);
    assert!(layouts["strided"].equal(&base.slice(0, 1, 6, 2).slice(1, 0, 10, 3)));
    assert_eq!(layouts["scalar"].size(), Vec::<i64>::new());
    assert_eq!(layouts["empty"].size(), [0, 3]);

    // Tensors that shared a storage in Python share it again.
    let shared: HashMap<String, Tensor> = load_state_dict(&d.join("shared.pt")).unwrap().into_iter().collect();
    let whole = &shared["whole"];
    let _ = shared["view"].shallow_clone().fill_(-1.0);
    assert_eq!(whole.double_value(&[1, 4]), -1.0);
    assert_eq!(whole.double_value(&[2, 4]), 24.0);
}

/// Rust writes tensors of every layout and kind; PyTorch (weights_only)
/// checks them against the same construction.
#[test]
fn rust_files_open_in_python() {
    let dir = scratch();
    let d = dir.path();
    let cpu = (Kind::Float, Device::Cpu);
    let base = Tensor::arange(60, cpu).reshape([6, 10]);
    save_tensor_pt(&d.join("bare.pt"), &base).unwrap();
    save_tensor_pt(&d.join("transposed.pt"), &base.tr()).unwrap();
    save_tensor_pt(&d.join("slice.pt"), &base.narrow(0, 2, 3)).unwrap();
    save_tensor_pt(&d.join("scalar.pt"), &Tensor::from(2.5f64)).unwrap();
    save_tensor_pt(&d.join("empty.pt"), &Tensor::zeros([0, 3], cpu)).unwrap();
    let entries = vec![
        ("weight".to_string(), base.narrow(1, 0, 4).to_kind(Kind::Half)),
        ("bias".to_string(), Tensor::arange(6, cpu).to_kind(Kind::BFloat16)),
        ("mask".to_string(), base.gt(30.0)),
        ("count".to_string(), Tensor::from(7i64)),
    ];
    save_state_dict_pt(&d.join("sd.pt"), &entries).unwrap();
    let linear = vec![
        ("weight".to_string(), Tensor::arange(8, cpu).reshape([2, 4])),
        ("bias".to_string(), Tensor::from_slice(&[0.5f32, -0.5])),
    ];
    save_nested_state_dicts_pt(&d.join("nested.pt"), &[("net", &linear)]).unwrap();
    let mixed = PtValue::Dict(vec![
        ("net".into(), PtValue::state_dict(&linear)),
        ("epoch".into(), PtValue::Int(12)),
        ("big".into(), PtValue::Int(1 << 40)),
        ("neg".into(), PtValue::Int(-70000)),
        ("lr".into(), PtValue::Float(1e-3)),
        ("name".into(), PtValue::Str("café".into())),
        ("list".into(), PtValue::List(vec![PtValue::Bool(true), PtValue::None])),
    ]);
    save_pt(&d.join("mixed.pt"), &mixed).unwrap();
    let out = run_python(
        r#"
import sys, collections, torch
d = sys.argv[1]
L = lambda name: torch.load(f"{d}/{name}", weights_only=True)
base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
assert torch.equal(L("bare.pt"), base)
assert torch.equal(L("transposed.pt"), base.t())
assert torch.equal(L("slice.pt"), base[2:5])
s = L("scalar.pt"); assert s.shape == () and s.dtype == torch.float64 and s.item() == 2.5
assert L("empty.pt").shape == (0, 3)
sd = L("sd.pt")
assert type(sd) is collections.OrderedDict and list(sd) == ["weight", "bias", "mask", "count"]
assert sd["weight"].dtype == torch.float16 and torch.equal(sd["weight"], base[:, :4].half())
assert sd["bias"].dtype == torch.bfloat16 and torch.equal(sd["bias"], torch.arange(6.).bfloat16())
assert sd["mask"].dtype == torch.bool and torch.equal(sd["mask"], base > 30)
assert sd["count"].dtype == torch.int64 and sd["count"].item() == 7
lin = torch.nn.Linear(4, 2)
lin.load_state_dict(L("nested.pt")["net"])
assert torch.equal(lin.bias.data, torch.tensor([0.5, -0.5]))
m = L("mixed.pt")
assert type(m) is dict and list(m) == ["net", "epoch", "big", "neg", "lr", "name", "list"]
assert (m["epoch"], m["big"], m["neg"], m["lr"], m["name"], m["list"]) == (12, 2**40, -70000, 1e-3, "café", [True, None])
lin.load_state_dict(m["net"])
print("ok")
"#,
        &[d],
    );
    assert_eq!(out.trim(), "ok");
    // Rust reads its own files back the same way.
    let back = load_state_dict(&d.join("sd.pt")).unwrap();
    for ((n1, t1), (n2, t2)) in entries.iter().zip(&back) {
        assert_eq!(n1, n2);
        assert!(t1.equal(t2), "{n1}");
    }
}

const SCRIPTED_MODULE: &str = r#"
import sys, torch
d = sys.argv[1]

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, x):
        return self.norm(self.proj(x)) * self.scale

    @torch.jit.export
    def encode_text(self, x):
        return self.proj(x).sum(dim=1)

torch.manual_seed(0)
m = Tiny().eval()
with torch.no_grad():
    m.norm.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    m.norm.running_var.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
s = torch.jit.script(m)
s.save(f"{d}/scripted.pt")
torch.jit.trace(m, torch.randn(2, 3)).save(f"{d}/traced.pt")
torch.save(m.state_dict(), f"{d}/state_dict.pt")
x = torch.linspace(-1, 1, 6).reshape(2, 3)
torch.save({"x": x, "forward": m(x).detach(), "encode_text": m.encode_text(x).detach(), **{k: v for k, v in m.state_dict().items()}}, f"{d}/expected.pt")
"#;

#[test]
fn torchscript_archives() {
    let dir = scratch();
    let d = dir.path();
    // Scripting needs the class source, so the script runs from a file.
    let script = d.join("make_scripted.py");
    std::fs::write(&script, SCRIPTED_MODULE).unwrap();
    let out = std::process::Command::new(formats_util::python()).arg(&script).arg(d).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(is_torchscript(&d.join("scripted.pt")).unwrap());
    assert!(is_torchscript(&d.join("traced.pt")).unwrap());
    assert!(!is_torchscript(&d.join("state_dict.pt")).unwrap());
    let e = ScriptModule::load(&d.join("state_dict.pt"), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("not a TorchScript archive") && e.contains("state_dict.pt"), "{e}");

    let expected: HashMap<String, Tensor> = load_state_dict(&d.join("expected.pt")).unwrap().into_iter().collect();
    for file in ["scripted.pt", "traced.pt"] {
        let m = ScriptModule::load(&d.join(file), Device::Cpu).unwrap();
        let params: Vec<String> = m.named_parameters().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(params, ["proj.weight", "proj.bias", "norm.weight", "norm.bias"], "{file}");
        let buffers: HashMap<String, Tensor> = m.named_buffers().unwrap().into_iter().collect();
        for name in ["scale", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"] {
            assert!(buffers[name].equal(&expected[name]), "{file}: {name}");
        }
        for (name, t) in m.named_parameters().unwrap() {
            assert!(t.equal(&expected[&name]), "{file}: {name}");
        }
        let y = m.method("forward", &[expected["x"].shallow_clone()]).unwrap();
        assert!(y.allclose(&expected["forward"], 1e-6, 1e-6, false), "{file}");
        if file == "scripted.pt" {
            let y = m.method("encode_text", &[expected["x"].shallow_clone()]).unwrap();
            assert!(y.allclose(&expected["encode_text"], 1e-6, 1e-6, false));
            let e = m.method("no_such_method", &[expected["x"].shallow_clone()]).unwrap_err().to_string();
            assert!(e.contains("no_such_method"), "{e}");
        }
        // The archive's tensors also load as a flat state dict.
        let flat: Vec<String> = load_state_dict(&d.join(file)).unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(flat.contains(&"norm.running_var".to_string()), "{flat:?}");
    }
}

/// An archive shaped like OpenAI's released CLIP files: a tiny ResNet CLIP
/// from the reference code (clip-anytorch), traced with `encode_image` and
/// `encode_text`. Parameters plus buffers must cover the state dict
/// `clip.load` rebuilds the model from, with the same values.
#[test]
fn traced_clip_archive_exposes_its_state_dict() {
    let dir = scratch();
    let d = dir.path();
    run_python(
        r#"
import sys, warnings, torch
warnings.filterwarnings("ignore")
from clip.model import CLIP
d = sys.argv[1]
torch.manual_seed(0)
m = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None,
         context_length=77, vocab_size=49408, transformer_width=32, transformer_heads=2, transformer_layers=1).eval()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_()
img = torch.randn(2, 3, 64, 64)
txt = torch.randint(0, 49408, (2, 77))
torch.jit.trace_module(m, {"encode_image": img, "encode_text": txt}).save(f"{d}/clip_rn.pt")
torch.save(m.state_dict(), f"{d}/clip_state.pt")
torch.save({"img": img, "txt": txt, "image_features": m.encode_image(img).detach(),
            "text_features": m.encode_text(txt).detach()}, f"{d}/clip_io.pt")
"#,
        &[d],
    );
    let m = ScriptModule::load(&d.join("clip_rn.pt"), Device::Cpu).unwrap();
    let mut held: HashMap<String, Tensor> = m.named_parameters().unwrap().into_iter().collect();
    held.extend(m.named_buffers().unwrap());
    let state = load_state_dict(&d.join("clip_state.pt")).unwrap();
    assert!(state.iter().any(|(n, _)| n.ends_with("running_mean")));
    for (name, t) in &state {
        let got = held.get(name).unwrap_or_else(|| panic!("{name} missing from the archive"));
        assert!(got.equal(t), "{name} differs");
    }
    let io: HashMap<String, Tensor> = load_state_dict(&d.join("clip_io.pt")).unwrap().into_iter().collect();
    let f = m.method("encode_image", &[io["img"].shallow_clone()]).unwrap();
    assert!(f.allclose(&io["image_features"], 1e-5, 1e-5, false));
    let f = m.method("encode_text", &[io["txt"].shallow_clone()]).unwrap();
    assert!(f.allclose(&io["text_features"], 1e-5, 1e-5, false));
}

/// The store hashes outputs by content: the same tensors must give the same
/// bytes, run after run, whatever the time (zip entries carry one).
#[test]
fn saving_the_same_state_dict_twice_gives_identical_bytes() {
    let dir = scratch();
    let d = dir.path();
    let entries = vec![
        ("weight".to_string(), Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4])),
        ("bias".to_string(), Tensor::from_slice(&[0.5f32, -1.0, 2.0])),
    ];
    save_state_dict_pt(&d.join("a.pt"), &entries).unwrap();
    // Past a second boundary of the zip's two-second clock resolution.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    save_state_dict_pt(&d.join("b.pt"), &entries).unwrap();
    let (a, b) = (std::fs::read(d.join("a.pt")).unwrap(), std::fs::read(d.join("b.pt")).unwrap());
    assert!(a == b, "two saves of the same tensors differ");
}
