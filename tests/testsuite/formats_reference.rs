//! Our readers on real files written by the original TOE release's Python
//! code (CLIP ViT-B/32 on ImageNet): the unicode class-name array, the
//! pickled object array of description outliers, the bare-tensor class means
//! and precision matrix, with the properties the release documents for them.
//! The files are not part of the project; `formats_util::reference_dir` says
//! where they are looked for, and each test is skipped (with a message) when
//! they are absent.

use crate::formats_util;

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use tch::Kind;
use toe_pipe::formats::{load_pt, load_state_dict, load_tensor_pt, read_strings, tensor_to_array, PtValue};

use formats_util::{reference_dir, run_python};

#[test]
fn class_names_unicode_array() {
    let Some(dir) = reference_dir("class_names_unicode_array") else {
        return;
    };
    let names = read_strings(&dir.join("imagenet_class_clean.npy")).unwrap();
    assert_eq!(names.len(), 1000);
    assert_eq!(&names[..3], ["tench", "goldfish", "great white shark"]);
}

/// `{class: [phrase, ...]}` in file order (serde_json's map would sort keys).
struct OrderedPhrases(Vec<(String, Vec<String>)>);

impl<'de> serde::Deserialize<'de> for OrderedPhrases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedPhrases;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedPhrases, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, Vec<String>>()? {
                    out.push(entry);
                }
                Ok(OrderedPhrases(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[test]
fn outlier_descriptions_object_array() {
    let Some(dir) = reference_dir("outlier_descriptions_object_array") else {
        return;
    };
    let sentences = read_strings(&dir.join("ImageNet_outlier_description.npy")).unwrap();
    assert_eq!(sentences.len(), 5800);
    assert_eq!(sentences[0], "This is a photo of a freshwater fish");
    let json = std::fs::read_to_string(dir.join("descriptors_imagenet.json")).unwrap();
    let phrases: OrderedPhrases = serde_json::from_str(&json).unwrap();
    let expected: Vec<String> =
        phrases.0.iter().flat_map(|(_, ps)| ps.iter().map(|p| format!("This is a photo of {p}"))).collect();
    assert_eq!(sentences, expected);
}

#[test]
fn class_means_bare_tensor() {
    let Some(dir) = reference_dir("class_means_bare_tensor") else {
        return;
    };
    let path = dir.join("ImageNet_classwise_mean_ImageNet_250_True.pt");
    let means = load_tensor_pt(&path).unwrap();
    assert_eq!(means.size(), [100, 512]);
    assert_eq!(means.kind(), Kind::Float);
    let norms = tensor_to_array::<f32>(&means.norm_scalaropt_dim(2, [1], false)).unwrap();
    for (i, n) in norms.iter().enumerate() {
        assert!((n - 1.0).abs() < 1e-5, "row {i} has norm {n}");
    }
    // Same numbers as PyTorch reads.
    let py = run_python(
        "import sys, torch; t = torch.load(sys.argv[1], map_location=\"cpu\"); print(repr(t.double().sum().item()), repr(t[3, 7].item()))",
        &[&path],
    );
    let py: Vec<f64> = py.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let sum = means.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
    let at = means.double_value(&[3, 7]);
    assert_eq!(py, [sum, at]);

    // A bare tensor is not a state dict.
    let e = load_state_dict(&path).unwrap_err().to_string();
    assert!(e.contains("bare tensor") && e.contains("ImageNet_classwise_mean"), "{e}");
    assert!(matches!(load_pt(&path).unwrap(), PtValue::Tensor(_)));
}

#[test]
fn precision_matrix_bare_tensor() {
    let Some(dir) = reference_dir("precision_matrix_bare_tensor") else {
        return;
    };
    let p = load_tensor_pt(&dir.join("ImageNet_precision_ImageNet_250_True.pt")).unwrap();
    assert_eq!(p.size(), [512, 512]);
    let asym = (&p - p.tr()).abs().max().double_value(&[]);
    let scale = p.abs().max().double_value(&[]);
    assert!(asym <= 1e-5 * scale, "max |P - P^T| = {asym} of max |P| = {scale}");
    let p00 = p.double_value(&[0, 0]);
    assert!((p00 - 7249.07).abs() < 0.01, "P[0,0] = {p00}");
}
