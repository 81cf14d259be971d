//! The sentencepiece reader against the `sentencepiece` Python package and
//! Hugging Face's BertGenerationTokenizer, on small models trained here.

use crate::decoder_common;

use std::path::Path;

use toe_pipe::decoder::sentencepiece::ModelType;
use toe_pipe::decoder::{DecoderTokenizer, SentencePieceModel};

const TRAIN_AND_ENCODE: &str = r#"
import json, random, sys, os
import sentencepiece as spm
out = sys.argv[1]
random.seed(0)
base = ("a man woman dog cat riding sitting on the of with red blue green small large street table plate "
        "pizza surfboard wave beach train station bus parked next to food kitchen café naïve").split()
letters = "abcdefghijklmnopqrstuvwxyz"
extra = ["".join(random.choice(letters) for _ in range(random.randint(2, 9))) for _ in range(300)]
words = base * 5 + extra
def sentence():
    s = " ".join(random.choice(words) for _ in range(random.randint(3, 12)))
    s = s.capitalize() if random.random() < 0.7 else s.upper() if random.random() < 0.2 else s
    return s + random.choice([".", "!", "", ",", " 42", "?"])
corpus = [sentence() for _ in range(600)]
with open(os.path.join(out, "corpus.txt"), "w") as f:
    f.write("\n".join(corpus))
common = dict(input=os.path.join(out, "corpus.txt"), vocab_size=300, hard_vocab_limit=False,
              pad_id=0, eos_id=1, bos_id=2, unk_id=3, minloglevel=2)
models = {
    "unigram": dict(model_type="unigram", user_defined_symbols=["<::::>", "@@"]),
    "bytefb": dict(model_type="unigram", byte_fallback=True, vocab_size=600),
    "identity": dict(model_type="unigram", normalization_rule_name="identity", add_dummy_prefix=False,
                     remove_extra_whitespaces=False),
    "bpe": dict(model_type="bpe"),
}
for name, kw in models.items():
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(out, name), **{**common, **kw})

tricky = ["", "   ", "Hello  world", "  leading and trailing  ", "tabs\tand\nnewlines", "ＡＢＣ full width ｄｏｇ",
          "ﬁ ligature ﬀ", "① ② ③ circled", "café naïve déjà", "cafe\u0301 combining", "日本語 text 中文", "emoji 😀 🐶!",
          "zero\u200bwidth", "nbsp\u00a0here", "ideographic\u3000space", "ctrl\x01char\x7f", "the <::::> sep@@x",
          "MIXED case Words", "numbers 123 4.5 6,7", "punct!!! ... ??? ,,,", "a" * 40, "x", "Ωmega ß straße",
          "\u2581already escaped"]
sentences = corpus[:150] + tricky
result = {"sentences": sentences, "encodings": {}}
for name in models:
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, name + ".model"))
    result["encodings"][name] = [sp.encode(s) for s in sentences]

from transformers import BertGenerationTokenizer
tok = BertGenerationTokenizer(os.path.join(out, "unigram.model"))
result["hf_decode"] = [tok.decode(i) for i in range(len(tok))]
result["hf_special"] = [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]
captions = corpus[150:250] + ["A man riding a wave on top of a surfboard.", "  two  dogs  "]
enc = tok(["<s> " + c + " </s>" for c in captions], truncation=True, max_length=12, return_token_type_ids=False)
result["captions"] = captions
result["hf_caption_ids"] = enc["input_ids"]
print(json.dumps(result))
"#;

#[test]
fn sentencepiece_matches_python_and_hugging_face() {
    let Some(py) = decoder_common::python_with(&["sentencepiece", "transformers"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = decoder_common::run_python(&py, TRAIN_AND_ENCODE, &[dir.path().to_str().unwrap()]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sentences: Vec<String> = serde_json::from_value(r["sentences"].clone()).unwrap();

    for name in ["unigram", "bytefb", "identity"] {
        let model = SentencePieceModel::load(&dir.path().join(format!("{name}.model"))).unwrap();
        assert_eq!(model.model_type(), ModelType::Unigram);
        let expected: Vec<Vec<i64>> = serde_json::from_value(r["encodings"][name].clone()).unwrap();
        let mut mismatches = Vec::new();
        for (s, want) in sentences.iter().zip(&expected) {
            let got = model.encode(s).unwrap();
            if &got != want {
                mismatches
                    .push(format!("{s:?}: ours {got:?}, sentencepiece {want:?} (normalized {:?})", model.normalize(s)));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{name}: {} of {} differ:\n{}",
            mismatches.len(),
            sentences.len(),
            mismatches.join("\n")
        );
    }

    // Decoding single ids exactly as HF's BertGenerationTokenizer.decode(id).
    let model = SentencePieceModel::load(&dir.path().join("unigram.model")).unwrap();
    let hf_decode: Vec<String> = serde_json::from_value(r["hf_decode"].clone()).unwrap();
    assert_eq!(hf_decode.len(), model.vocab_size());
    for (id, want) in hf_decode.iter().enumerate() {
        assert_eq!(&model.decode_token(id as i64), want, "decode of id {id} (piece {:?})", model.pieces()[id].text);
    }
    let special: Vec<i64> = serde_json::from_value(r["hf_special"].clone()).unwrap();
    assert_eq!(special, vec![model.bos_id(), model.eos_id(), model.pad_id()]);

    // Training captions as the original tokenises "<s> caption </s>".
    let captions: Vec<String> = serde_json::from_value(r["captions"].clone()).unwrap();
    let hf_ids: Vec<Vec<i64>> = serde_json::from_value(r["hf_caption_ids"].clone()).unwrap();
    for (c, want) in captions.iter().zip(&hf_ids) {
        assert_eq!(&model.encode_caption(c, 12).unwrap(), want, "caption {c:?}");
    }

    // BPE models decode but refuse to encode, saying why.
    let bpe = SentencePieceModel::load(&dir.path().join("bpe.model")).unwrap();
    assert_eq!(bpe.model_type(), ModelType::Bpe);
    let err = format!("{:#}", bpe.encode("a man").unwrap_err());
    assert!(err.contains("Bpe") && err.contains("unigram") && err.contains("bpe.model"), "{err}");
    assert!(!bpe.decode_token(10).is_empty());
}

#[test]
fn unreadable_model_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("spiece.model");
    std::fs::write(&p, b"\x0a\xff\xff\xff").unwrap();
    let err = format!("{:#}", SentencePieceModel::load(&p).unwrap_err());
    assert!(err.contains("spiece.model") && err.contains("truncated"), "{err}");
    let err = format!("{:#}", SentencePieceModel::load(Path::new("/nonexistent/spiece.model")).unwrap_err());
    assert!(err.contains("/nonexistent/spiece.model"), "{err}");
    std::fs::write(&p, b"").unwrap();
    let err = format!("{:#}", SentencePieceModel::load(&p).unwrap_err());
    assert!(err.contains("no pieces"), "{err}");
}
