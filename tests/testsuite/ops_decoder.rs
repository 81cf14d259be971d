//! The decoder ops through the CLI: `train_decoder` on a small demo-world
//! corpus with a tiny random CLIP the test builds, then `outliers_word` and
//! `caption_images` on the model folder it writes; errors for a folder
//! without its checkpoint and for a top-k wider than the vocabulary; and,
//! in the library, greedy captions with the key/value cache equal to
//! decoding step by step without it.

use crate::common;
use crate::decoder_common;
use crate::write_tiny_clip;

use std::collections::HashSet;
use std::path::Path;

use common::Ws;
use tch::{Device, Kind, Tensor};
use toe_pipe::decoder::model_dir::read_word_vocab_json;
use toe_pipe::decoder::{
    generate_captions, load_decoder, save_model_dir, BertGenerationDecoder, DecoderConfig, DecoderDir,
    DecoderTokenizer, ModelTokenizer, SentencePieceModel, WordVocab,
};
use toe_pipe::formats;
use toe_pipe::toe::outlier_text::non_semantic_words;

const ID_CLASSES: &str = r#"["circle", "star", "square"]"#;

fn pipeline() -> String {
    format!(
        r#"
[pipeline]
name = "decoder-ops"

[[node]]
id = "corpus"
op = "world_generate"
params = {{ seed = 1, image_size = 32, id_classes = {ID_CLASSES}, set = "corpus", count = 300 }}

[[node]]
id = "id_val"
op = "world_generate"
params = {{ seed = 1, image_size = 32, id_classes = {ID_CLASSES}, set = "id_val", count = 4 }}

[[node]]
id = "classes"
op = "world_classes"
params = {{ image_size = 32, id_classes = {ID_CLASSES} }}

[[node]]
id = "features"
op = "embed_images"
sources.model = "models/clip.pt"
inputs.images = "id_val.images"

[[node]]
id = "decoder"
op = "train_decoder"
sources.clip = "models/clip.pt"
inputs.corpus = "corpus.images"
params = {{ epochs = 4, hidden = 32, layers = 1, heads = 2, lr = 0.003, batch_size = 32, val_fraction = 0.2 }}
outputs.model = {{ path = "out/decoder" }}
outputs.log = {{ path = "out/decoder_log.json" }}

[[node]]
id = "finetuned"
op = "train_decoder"
sources.clip = "models/clip.pt"
inputs.corpus = "corpus.images"
inputs.init = "decoder.model"
params = {{ epochs = 1, lr = 0.001, batch_size = 32, val_fraction = 0.2 }}
outputs.model = {{ path = "out/finetuned" }}
outputs.log = {{ path = "out/finetuned_log.json" }}

[[node]]
id = "words"
op = "outliers_word"
inputs.model = "decoder.model"
inputs.features = "features.features"
inputs.class_names = "classes.class_names"
params = {{ top_k = 20, keep_from = 11 }}
outputs.words = {{ path = "out/words.npy" }}
outputs.sentences = {{ path = "out/word_sentences.npy" }}

[[node]]
id = "captions"
op = "caption_images"
inputs.model = "decoder.model"
inputs.features = "features.features"
outputs.captions = {{ path = "out/captions.npy" }}
"#
    )
}

#[test]
fn train_decoder_then_word_outliers_and_captions() {
    let ws = Ws::new();
    write_tiny_clip(&ws.path("models/clip.pt"));
    ws.write("pipeline.toml", &pipeline());
    let first = ws.run("pipeline.toml");
    assert!(first.ran().contains("decoder") && first.ran().contains("words"), "{}", first.all());
    // Progress per epoch in the node's log.
    let log = ws.toe(&["log", "decoder"]).ok().stdout;
    assert!(log.contains("epoch 1/4: train loss") && log.contains("epoch 4/4: train loss"), "{log}");

    // The model folder: checkpoint, word vocabulary, config with the heads.
    let dir = ws.path("out/decoder");
    for f in ["model.pt", "vocab.json", "config.json"] {
        assert!(dir.join(f).is_file(), "{f} missing from the model folder");
    }
    let config: serde_json::Value = serde_json::from_str(&ws.read("out/decoder/config.json")).unwrap();
    assert_eq!(config["heads"], 2);
    assert_eq!(config["hidden"], 32);
    assert_eq!(config["clip_embed_dim"], 16);

    // The validation loss falls; the kept epoch has the lowest.
    let log: serde_json::Value = serde_json::from_str(&ws.read("out/decoder_log.json")).unwrap();
    let val: Vec<f64> = log["epochs"].as_array().unwrap().iter().map(|e| e["val_loss"].as_f64().unwrap()).collect();
    assert_eq!(val.len(), 4);
    assert!(val[3] < val[0], "validation loss did not fall: {val:?}");
    let kept = log["kept_epoch"].as_u64().unwrap() as usize;
    assert_eq!(val[kept - 1], val.iter().cloned().fold(f64::INFINITY, f64::min));
    assert_eq!(log["images"], 300);
    assert_eq!(log["train_captions"].as_u64().unwrap() + log["val_captions"].as_u64().unwrap(), 300);

    // Fine-tuning from the folder keeps its tokenizer and shape, and starts
    // from its weights (below the first epoch's loss from scratch).
    assert_eq!(ws.read("out/finetuned/vocab.json"), ws.read("out/decoder/vocab.json"));
    assert_eq!(ws.read("out/finetuned/config.json"), ws.read("out/decoder/config.json"));
    let tuned: serde_json::Value = serde_json::from_str(&ws.read("out/finetuned_log.json")).unwrap();
    let tuned_val = tuned["epochs"][0]["val_loss"].as_f64().unwrap();
    assert!(tuned_val < val[0], "fine-tuned val loss {tuned_val} vs {val:?}");

    // The checkpoint loads here (shape from the weights, heads given) and
    // through the folder (heads from config.json).
    let rng = crate::rng_draws();
    let model = load_decoder(&dir.join("model.pt"), Some(2), Device::Cpu).unwrap();
    assert_eq!(model.config().hidden_size, 32);
    assert_eq!(model.config().num_hidden_layers, 1);
    let opened = DecoderDir::open(&dir, "model.pt", None, Device::Cpu).unwrap();
    drop(rng);
    assert_eq!(opened.model.config().num_attention_heads, 2);
    let vocab = read_word_vocab_json(&dir.join("vocab.json")).unwrap();
    assert_eq!(vocab.vocab_size() as i64, model.config().vocab_size);

    // And in PyTorch, as ZOC's code loads it.
    if let Some(py) = decoder_common::python_with(&["torch"]) {
        let script = "import sys, torch\nd = torch.load(sys.argv[1])\nprint(sorted(d), 'bert.embeddings.word_embeddings.weight' in d['net'], d['epoch'])";
        let out = decoder_common::run_python(&py, script, &[dir.join("model.pt").to_str().unwrap()]);
        assert!(out.starts_with("['epoch', 'net', 'validation loss'] True"), "{out}");
        assert_eq!(out.trim().rsplit(' ').next().unwrap(), (kept - 1).to_string(), "ZOC's 'epoch' is 0-based: {out}");
    }

    // Word outliers: no class names, nothing non-semantic, no special
    // tokens, no duplicates, words of the vocabulary; five sentences per word with templates.
    let words = formats::read_strings(&ws.path("out/words.npy")).unwrap();
    assert!(!words.is_empty());
    let blocked = non_semantic_words();
    let tokens: HashSet<&str> = vocab.tokens().iter().map(String::as_str).collect();
    for w in &words {
        assert!(!["circle", "star", "square"].contains(&w.as_str()), "class name {w} among the outliers");
        assert!(!blocked.contains(w), "non-semantic word {w:?} among the outliers");
        assert!(!["<s>", "</s>", "<pad>", "<unk>"].contains(&w.as_str()), "special token {w} among the outliers");
        assert!(tokens.contains(w.as_str()), "{w:?} is not in the vocabulary");
    }
    assert_eq!(words.iter().collect::<HashSet<_>>().len(), words.len());
    let sentences = formats::read_strings(&ws.path("out/word_sentences.npy")).unwrap();
    assert_eq!(sentences.len(), 5 * words.len());
    assert_eq!(sentences[0], format!("This is a photo of a {}", words[0]));
    assert_eq!(sentences[words.len()], format!("This is a blurry photo of {}", words[0]));

    // Captions: one per ID image (3 classes x 4), each made of vocabulary words.
    let captions = formats::read_strings(&ws.path("out/captions.npy")).unwrap();
    assert_eq!(captions.len(), 12);
    let specials = ["<pad>", "</s>", "<s>"];
    for c in &captions {
        for w in c.split(' ').filter(|w| !w.is_empty()) {
            assert!(tokens.contains(w) && !specials.contains(&w), "caption {c:?} has {w:?}");
        }
    }
    assert!(captions.iter().any(|c| c.split(' ').count() >= 2), "{captions:?}");

    // Nothing to do the second time.
    assert!(ws.run("pipeline.toml").ran().is_empty());
}

/// A model folder with a tiny random decoder over `words`, written by the
/// library as train_decoder writes it.
fn write_model_folder(dir: &Path, words: &[&str], clip_dim: i64) -> WordVocab {
    let _rng = crate::rng_lock();
    let vocab = WordVocab::build(words, 1);
    tch::manual_seed(3);
    let model =
        BertGenerationDecoder::new(DecoderConfig::small(vocab.vocab_size() as i64, 32, 1, 4), Device::Cpu).unwrap();
    save_model_dir(dir, &model, &ModelTokenizer::Words(vocab.clone()), clip_dim, 0, None).unwrap();
    vocab
}

fn word_pipeline(model: &str, top_k: i64) -> String {
    format!(
        r#"
[pipeline]
name = "words"

[[node]]
id = "words"
op = "outliers_word"
sources.model = "{model}"
sources.features = "data/features.npy"
sources.class_names = "data/classes.npy"
params = {{ top_k = {top_k}, keep_from = 3 }}
"#
    )
}

fn write_inputs(ws: &Ws) {
    std::fs::create_dir_all(ws.path("data")).unwrap();
    formats::write_npy_tensor(&ws.path("data/features.npy"), &Tensor::ones([3, 16], (Kind::Float, Device::Cpu)))
        .unwrap();
    formats::write_strings(&ws.path("data/classes.npy"), &["star"]).unwrap();
}

#[test]
fn a_folder_without_its_checkpoint_is_a_clear_error() {
    let ws = Ws::new();
    write_inputs(&ws);
    write_model_folder(&ws.path("models/decoder"), &["a red star", "a blue circle on a green square"], 16);
    std::fs::remove_file(ws.path("models/decoder/model.pt")).unwrap();
    ws.write("pipeline.toml", &word_pipeline("models/decoder", 6));
    let out = ws.toe(&["run", "pipeline.toml"]).fails();
    let all = out.all();
    assert!(all.contains("models/decoder") && all.contains("has no checkpoint model.pt"), "{all}");
    assert!(all.contains("`checkpoint`") && all.contains("config.json, vocab.json"), "{all}");

    // Without a tokenizer the message says which files it looks for.
    std::fs::remove_file(ws.path("models/decoder/vocab.json")).unwrap();
    std::fs::write(ws.path("models/decoder/model.pt"), b"").unwrap();
    let all = ws.toe(&["run", "pipeline.toml"]).fails().all();
    assert!(all.contains("has no tokenizer") && all.contains("spiece.model") && all.contains("vocab.json"), "{all}");
}

#[test]
fn a_top_k_wider_than_the_vocabulary_names_the_param() {
    let ws = Ws::new();
    write_inputs(&ws);
    let vocab = write_model_folder(&ws.path("models/decoder"), &["a red star", "a blue circle on a green square"], 16);
    ws.write("pipeline.toml", &word_pipeline("models/decoder", 55));
    let all = ws.toe(&["run", "pipeline.toml"]).fails().all();
    let want = format!("top_k 55 exceeds the decoder's vocabulary of {} tokens", vocab.vocab_size());
    assert!(all.contains(&want) && all.contains("lower the param `top_k`"), "{all}");

    // Within the vocabulary it runs (the random decoder's words, filtered).
    ws.write("pipeline.toml", &word_pipeline("models/decoder", vocab.vocab_size() as i64));
    let out = ws.run("pipeline.toml");
    assert!(out.ran().contains("words"), "{}", out.all());
}

/// Greedy decoding by hand: the whole sequence through `forward` (no cache)
/// at every step, argmax of the last position, until EOS or `max_tokens`.
fn greedy_without_cache(model: &BertGenerationDecoder, clip: &Tensor, max_tokens: usize) -> Vec<i64> {
    let c = model.config();
    let enc = toe_pipe::decoder::clip_to_encoder_states(&clip.unsqueeze(0), c.hidden_size, Kind::Float).unwrap();
    let mut seq = vec![c.bos_token_id];
    tch::no_grad(|| {
        for _ in 0..max_tokens {
            let ids = Tensor::from_slice(&seq).unsqueeze(0);
            let logits = model.forward(&ids, &enc, None, false).unwrap();
            let next = logits.select(1, seq.len() as i64 - 1).argmax(-1, false).int64_value(&[0]);
            if next == c.eos_token_id {
                break;
            }
            seq.push(next);
        }
    });
    seq[1..].to_vec()
}

#[test]
fn greedy_captions_with_the_cache_equal_step_by_step_decoding() {
    let _rng = crate::rng_lock();
    tch::manual_seed(21);
    let config = DecoderConfig { max_position_embeddings: 16, ..DecoderConfig::small(12, 32, 2, 4) };
    let model = BertGenerationDecoder::new(config, Device::Cpu).unwrap();
    let clip = Tensor::randn([9, 16], (Kind::Float, Device::Cpu)) * 3.0;
    let max_tokens = 10;
    // Random weights rarely pick EOS: raise its bias step by step so that
    // captions stop at every length, some early, some at max_tokens.
    let lm_bias = model.var_store().variables()["lm_head.bias"].shallow_clone();
    let mut lengths = Vec::new();
    for eos_bias in [0.0, 0.05, 0.1, 0.15, 0.2, 0.3] {
        tch::no_grad(|| {
            let _ = lm_bias.get(1).fill_(eos_bias);
        });
        // Batches of 4: rows that finished keep riding along with the others.
        let ours = generate_captions(&model, &clip, max_tokens, 4).unwrap();
        let want: Vec<Vec<i64>> = (0..9).map(|i| greedy_without_cache(&model, &clip.get(i), max_tokens)).collect();
        assert_eq!(ours, want, "EOS bias {eos_bias}");
        lengths.extend(ours.iter().map(Vec::len));
    }
    assert!(lengths.iter().any(|&l| 0 < l && l < max_tokens) && lengths.contains(&max_tokens), "{lengths:?}");

    let err = format!("{:#}", generate_captions(&model, &clip, 17, 4).unwrap_err());
    assert!(err.contains("exceeds the decoder's 16 positions"), "{err}");
}

#[test]
fn sentencepiece_decoding_matches_the_package_and_trains_through_the_op() {
    let Some(py) = decoder_common::python_with(&["sentencepiece"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, os, random
import sentencepiece as spm
out = sys.argv[1]
random.seed(1)
words = "a man woman dog riding on the street with red blue small large pizza café naïve surfboard".split()
with open(os.path.join(out, "c.txt"), "w") as f:
    f.write("\n".join(" ".join(random.choice(words) for _ in range(8)) for _ in range(300)))
spm.SentencePieceTrainer.train(input=os.path.join(out, "c.txt"), model_prefix=os.path.join(out, "sp"), vocab_size=400, hard_vocab_limit=False,
    pad_id=0, eos_id=1, bos_id=2, unk_id=3, byte_fallback=True, minloglevel=2)
sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "sp.model"))
random.seed(2)
for _ in range(20):
    ids = [random.randrange(sp.get_piece_size()) for _ in range(random.randint(0, 12))]
    print(" ".join(map(str, ids)) + "\t" + sp.decode(ids))
"#;
    let out = decoder_common::run_python(&py, script, &[dir.path().to_str().unwrap()]);
    let spm = SentencePieceModel::load(&dir.path().join("sp.model")).unwrap();
    for line in out.lines() {
        let (ids, want) = line.split_once('\t').unwrap();
        let ids: Vec<i64> = ids.split_whitespace().map(|s| s.parse().unwrap()).collect();
        assert_eq!(spm.decode_text(&ids), want.trim(), "ids {ids:?}");
    }

    // train_decoder with that tokenizer: the folder carries spiece.model,
    // and the captions decode through it.
    let ws = Ws::new();
    write_tiny_clip(&ws.path("models/clip.pt"));
    std::fs::copy(dir.path().join("sp.model"), ws.path("models/sp.model")).unwrap();
    ws.write(
        "pipeline.toml",
        &format!(
            r#"
[pipeline]
name = "spm"
[[node]]
id = "corpus"
op = "world_generate"
params = {{ seed = 2, image_size = 32, id_classes = {ID_CLASSES}, set = "corpus", count = 40 }}
[[node]]
id = "decoder"
op = "train_decoder"
sources.clip = "models/clip.pt"
sources.tokenizer = "models/sp.model"
inputs.corpus = "corpus.images"
params = {{ epochs = 1, hidden = 32, layers = 1, heads = 2 }}
outputs.model = {{ path = "out/decoder" }}
[[node]]
id = "captions"
op = "caption_images"
inputs.model = "decoder.model"
sources.features = "data/features.npy"
params.max_tokens = 6
outputs.captions = {{ path = "out/captions.npy" }}
"#
        ),
    );
    write_inputs(&ws);
    ws.run("pipeline.toml");
    assert_eq!(
        std::fs::read(ws.path("out/decoder/spiece.model")).unwrap(),
        std::fs::read(ws.path("models/sp.model")).unwrap()
    );
    assert!(!ws.path("out/decoder/vocab.json").exists());
    let config: serde_json::Value = serde_json::from_str(&ws.read("out/decoder/config.json")).unwrap();
    assert_eq!(config["vocab_size"], spm.vocab_size() as i64);
    assert_eq!(formats::read_strings(&ws.path("out/captions.npy")).unwrap().len(), 3);
}
