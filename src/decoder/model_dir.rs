//! The decoder model folder: what the `train_decoder` op writes and what
//! `outliers_word`, `caption_images` (and `train_decoder`'s `init`) read.
//! The same layout holds the released ZOC/TOE decoder and ours:
//!
//! * a checkpoint, `model.pt` unless the op's `checkpoint` param names
//!   another (the released one is `model_epoch100.pt`): ZOC's
//!   `torch.save({'net': state_dict})` with Hugging Face's
//!   BertGenerationDecoder parameter names (see [`super::checkpoint`]);
//! * a tokenizer: `spiece.model` (BertGeneration's sentencepiece model, the
//!   released decoder's) or `vocab.json` (a word-level [`WordVocab`] as a
//!   JSON array of tokens, index = id, what `train_decoder` builds from
//!   captions); `spiece.model` wins when both are present;
//! * optionally `config.json` with at least `{"heads": N}` (Hugging Face's
//!   `"num_attention_heads"` is read too): the number of attention heads,
//!   which the weights cannot tell. Without it the caller's default applies
//!   (16, the `bert_for_seq_generation_L-24_bbc_encoder` configuration).
//!   `train_decoder` also writes the rest of the shape there, for people.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::Device;

use super::bert_generation::BertGenerationDecoder;
use super::checkpoint::{load_decoder, save_decoder_with_epoch};
use super::sentencepiece::SentencePieceModel;
use super::tokenizer::DecoderTokenizer;
use super::word_vocab::WordVocab;

pub const DEFAULT_CHECKPOINT: &str = "model.pt";
pub const CONFIG_FILE: &str = "config.json";
pub const SENTENCEPIECE_FILE: &str = "spiece.model";
pub const WORD_VOCAB_FILE: &str = "vocab.json";
/// Heads of `bert_for_seq_generation_L-24_bbc_encoder` (the released decoder).
pub const DEFAULT_HEADS: i64 = 16;

/// A model folder's tokenizer, either kind.
#[derive(Debug, Clone)]
pub enum ModelTokenizer {
    /// A sentencepiece model and the file it was read from (copied into
    /// the folders written with it).
    SentencePiece {
        model: Box<SentencePieceModel>,
        file: PathBuf,
    },
    Words(WordVocab),
}

impl ModelTokenizer {
    pub fn as_dyn(&self) -> &dyn DecoderTokenizer {
        match self {
            ModelTokenizer::SentencePiece { model, .. } => model.as_ref(),
            ModelTokenizer::Words(vocab) => vocab,
        }
    }

    /// The file name this tokenizer has in a model folder.
    pub fn file_name(&self) -> &'static str {
        match self {
            ModelTokenizer::SentencePiece { .. } => SENTENCEPIECE_FILE,
            ModelTokenizer::Words(_) => WORD_VOCAB_FILE,
        }
    }
}

/// A word vocabulary as `vocab.json`: a JSON array of the tokens, index = id.
pub fn write_word_vocab_json(vocab: &WordVocab, path: &Path) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(vocab.tokens())?;
    std::fs::write(path, bytes).with_context(|| format!("writing word vocabulary {}", path.display()))
}

pub fn read_word_vocab_json(path: &Path) -> Result<WordVocab> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading word vocabulary {}", path.display()))?;
    let tokens: Vec<String> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON array of tokens (index = id)", path.display()))?;
    WordVocab::from_tokens(tokens).with_context(|| format!("word vocabulary {}", path.display()))
}

/// The heads recorded in a folder's `config.json`, if it has one.
fn config_heads(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let heads = ["heads", "num_attention_heads"].iter().find_map(|k| value.get(*k));
    match heads {
        None => bail!(
            "{}: no \"heads\" entry; write the decoder's number of attention heads there, e.g. {{\"heads\": 16}}",
            path.display()
        ),
        Some(v) => match v.as_i64() {
            Some(h) if h > 0 => Ok(Some(h)),
            _ => bail!("{}: \"heads\" must be a positive integer, found {v}", path.display()),
        },
    }
}

/// Names of the files in `dir`, for error messages.
fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        "it is empty".into()
    } else {
        format!("it holds {}", names.join(", "))
    }
}

/// An opened model folder: the decoder and its tokenizer.
pub struct DecoderDir {
    pub path: PathBuf,
    pub model: BertGenerationDecoder,
    pub tokenizer: ModelTokenizer,
}

impl DecoderDir {
    /// Open the folder `dir`: the checkpoint `checkpoint` (a file name in
    /// it), its tokenizer, and the heads from `heads_override`, else
    /// `config.json`, else [`DEFAULT_HEADS`]. Every error names the folder,
    /// the file and the fix.
    pub fn open(dir: &Path, checkpoint: &str, heads_override: Option<i64>, device: Device) -> Result<DecoderDir> {
        if !dir.is_dir() {
            bail!("decoder model folder {} does not exist or is not a folder", dir.display());
        }
        let ckpt = dir.join(checkpoint);
        if !ckpt.is_file() {
            bail!(
                "decoder model folder {} has no checkpoint {checkpoint} ({}); name the checkpoint file with the \
                 param `checkpoint` (the released TOE decoder is model_epoch100.pt) or train one with train_decoder",
                dir.display(),
                listing(dir)
            );
        }
        let tokenizer = Self::open_tokenizer(dir)?;
        let heads = match heads_override {
            Some(h) => h,
            None => config_heads(dir)?.unwrap_or(DEFAULT_HEADS),
        };
        let model = load_decoder(&ckpt, Some(heads), device).with_context(|| {
            format!(
                "decoder model folder {}: loading {checkpoint} with {heads} attention heads (from the param `heads`, \
                 else {CONFIG_FILE}, else {DEFAULT_HEADS}); if the heads are wrong, write {{\"heads\": N}} to {CONFIG_FILE} \
                 or set the param `heads`",
                dir.display()
            )
        })?;
        check_pair(&model, tokenizer.as_dyn(), dir)?;
        Ok(DecoderDir { path: dir.to_path_buf(), model, tokenizer })
    }

    /// The tokenizer of a model folder (`spiece.model`, else `vocab.json`).
    pub fn open_tokenizer(dir: &Path) -> Result<ModelTokenizer> {
        let spm = dir.join(SENTENCEPIECE_FILE);
        let words = dir.join(WORD_VOCAB_FILE);
        if spm.is_file() {
            Ok(ModelTokenizer::SentencePiece { model: Box::new(SentencePieceModel::load(&spm)?), file: spm })
        } else if words.is_file() {
            Ok(ModelTokenizer::Words(read_word_vocab_json(&words)?))
        } else {
            bail!(
                "decoder model folder {} has no tokenizer: neither {SENTENCEPIECE_FILE} nor {WORD_VOCAB_FILE} ({}); \
                 for the released ZOC/TOE decoder put the spiece.model of google/bert_for_seq_generation_L-24_bbc_encoder \
                 there; train_decoder writes {WORD_VOCAB_FILE} itself",
                dir.display(),
                listing(dir)
            )
        }
    }
}

/// A tokenizer and a decoder belong together: no more tokens than the
/// model's vocabulary, and the same special ids.
fn check_pair(model: &BertGenerationDecoder, tokenizer: &dyn DecoderTokenizer, dir: &Path) -> Result<()> {
    let c = model.config();
    if tokenizer.vocab_size() as i64 > c.vocab_size {
        bail!(
            "decoder model folder {}: the tokenizer has {} tokens but the checkpoint's vocabulary has {}; \
             they do not belong together",
            dir.display(),
            tokenizer.vocab_size(),
            c.vocab_size
        );
    }
    let pairs = [
        ("BOS", tokenizer.bos_id(), c.bos_token_id),
        ("EOS", tokenizer.eos_id(), c.eos_token_id),
        ("padding", tokenizer.pad_id(), c.pad_token_id),
    ];
    for (name, tok, model_id) in pairs {
        if tok != model_id {
            bail!(
                "decoder model folder {}: the tokenizer's {name} id is {tok}, the decoder's (BertGeneration's) is {model_id}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// What `config.json` records besides the heads (for people and tools).
#[derive(Debug, Clone, Serialize)]
pub struct DirConfig {
    pub heads: i64,
    pub hidden: i64,
    pub layers: i64,
    pub intermediate: i64,
    pub vocab_size: i64,
    pub max_positions: i64,
    pub checkpoint: String,
    pub tokenizer: String,
    /// Width of the CLIP image embeddings it was trained on (repeated to
    /// `hidden` as ZOC does).
    pub clip_embed_dim: i64,
}

/// Write a model folder: `checkpoint` (ZOC format, with epoch and
/// validation loss), the tokenizer and `config.json`.
pub fn save_model_dir(
    dir: &Path,
    model: &BertGenerationDecoder,
    tokenizer: &ModelTokenizer,
    clip_embed_dim: i64,
    epoch: usize,
    validation_loss: Option<f64>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    save_decoder_with_epoch(model, &dir.join(DEFAULT_CHECKPOINT), epoch, validation_loss)?;
    match tokenizer {
        ModelTokenizer::Words(v) => write_word_vocab_json(v, &dir.join(WORD_VOCAB_FILE))?,
        ModelTokenizer::SentencePiece { file, .. } => {
            let to = dir.join(SENTENCEPIECE_FILE);
            std::fs::copy(file, &to).with_context(|| format!("copying {} to {}", file.display(), to.display()))?;
        }
    }
    let c = model.config();
    let config = DirConfig {
        heads: c.num_attention_heads,
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        intermediate: c.intermediate_size,
        vocab_size: c.vocab_size,
        max_positions: c.max_position_embeddings,
        checkpoint: DEFAULT_CHECKPOINT.into(),
        tokenizer: tokenizer.file_name().into(),
        clip_embed_dim,
    };
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?).with_context(|| format!("writing {}", path.display()))
}
