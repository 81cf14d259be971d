//! CLIP's byte-level BPE tokenizer, a port of OpenAI's `simple_tokenizer.py`
//! and `clip.tokenize` that gives the same ids.
//!
//! Text is cleaned (`text_clean`), lower-cased and split with CLIP's pattern;
//! each piece's UTF-8 bytes are mapped to printable characters (GPT-2's byte
//! encoder) and merged with the ranked pairs of `bpe_simple_vocab_16e6.txt.gz`.
//! The vocabulary is the 256 byte characters, the same with an end-of-word
//! marker `</w>`, one entry per merge, then `<|startoftext|>` and
//! `<|endoftext|>` (49408 ids). Merges run on ids instead of strings, which is
//! equivalent because every merge result is itself a vocabulary entry.
//!
//! The pattern needs Unicode classes (`\p{L}`, `\p{N}`) but no look-around, so
//! the `regex` crate suffices. Its leftmost-first alternation and `(?i)` case
//! folding match Python's `regex` module here (`'S` and `'ſ` match `'s`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use regex::Regex;
use tch::Tensor;

use super::text_clean::{basic_clean, whitespace_clean};

/// The file name OpenAI's package (and PyPI's `clip-anytorch`) ship.
pub const BPE_FILE_NAME: &str = "bpe_simple_vocab_16e6.txt.gz";
/// Context length of every released CLIP model.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// Environment variable that points at the vocabulary file.
pub const BPE_PATH_ENV: &str = "TOE_PIPE_CLIP_BPE";

const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";
/// `simple_tokenizer.py` reads merges from lines 1..=48894 of the file.
const NUM_MERGES: usize = 49152 - 256 - 2;
/// Words remembered by the BPE cache before it is emptied.
const CACHE_LIMIT: usize = 200_000;

pub struct Tokenizer {
    /// Vocabulary entry -> id.
    encoder: HashMap<String, u32>,
    /// Id -> vocabulary entry.
    decoder: Vec<String>,
    /// (left id, right id) -> (merge rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Byte -> id of its printable character.
    byte_ids: [u32; 256],
    /// Byte -> id of its printable character with `</w>` (ending a word).
    byte_end_ids: [u32; 256],
    /// Byte -> printable character (GPT-2's `bytes_to_unicode`).
    byte_chars: [char; 256],
    pattern: Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
    start_of_text: u32,
    end_of_text: u32,
}

impl Tokenizer {
    /// Reads the vocabulary from the default place, see [`default_bpe_path`].
    pub fn new() -> Result<Self> {
        Self::from_file(default_bpe_path()?)
    }

    /// Reads a `bpe_simple_vocab_16e6.txt.gz`-style file (gzip, or plain text).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let raw = std::fs::read(path).with_context(|| format!("reading the CLIP BPE vocabulary {}", path.display()))?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut text)
                .with_context(|| format!("decompressing {}", path.display()))?;
            text
        } else {
            String::from_utf8(raw).with_context(|| format!("{} is not UTF-8", path.display()))?
        };
        Self::from_merges_text(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Builds the tokenizer from the vocabulary file's text (a header line,
    /// then one merge `left right` per line).
    pub fn from_merges_text(text: &str) -> Result<Self> {
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < NUM_MERGES + 1 {
            bail!(
                "the BPE file has {} lines, CLIP's has at least {}: not a CLIP vocabulary",
                lines.len(),
                NUM_MERGES + 1
            );
        }
        let byte_table = bytes_to_unicode();
        let mut vocab: Vec<String> = byte_table.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(byte_table.iter().map(|(_, c)| format!("{c}</w>")));
        let mut merge_pairs = Vec::with_capacity(NUM_MERGES);
        for (number, line) in lines[1..=NUM_MERGES].iter().enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [left, right] = parts[..] else {
                bail!("line {} of the BPE file is not a merge `left right`: {line:?}", number + 2);
            };
            vocab.push(format!("{left}{right}"));
            merge_pairs.push((left, right));
        }
        vocab.push(START_OF_TEXT.to_string());
        vocab.push(END_OF_TEXT.to_string());

        // As Python's dict(zip(vocab, range(...))): a repeated entry keeps its last id.
        let mut encoder = HashMap::with_capacity(vocab.len());
        for (id, entry) in vocab.iter().enumerate() {
            encoder.insert(entry.clone(), id as u32);
        }
        let mut merges = HashMap::with_capacity(merge_pairs.len());
        for (rank, (left, right)) in merge_pairs.iter().enumerate() {
            let (Some(&l), Some(&r)) = (encoder.get(*left), encoder.get(*right)) else {
                continue; // a merge whose parts never occur can never apply
            };
            let merged = encoder[&format!("{left}{right}")];
            merges.insert((l, r), (rank as u32, merged));
        }
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        let mut byte_chars = ['\0'; 256];
        for &(byte, c) in &byte_table {
            byte_ids[byte as usize] = encoder[&c.to_string()];
            byte_end_ids[byte as usize] = encoder[&format!("{c}</w>")];
            byte_chars[byte as usize] = c;
        }
        let pattern = Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )?;
        Ok(Self {
            start_of_text: encoder[START_OF_TEXT],
            end_of_text: encoder[END_OF_TEXT],
            encoder,
            decoder: vocab,
            merges,
            byte_ids,
            byte_end_ids,
            byte_chars,
            pattern,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    pub fn start_of_text(&self) -> u32 {
        self.start_of_text
    }

    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// The ids of one text, without start and end tokens (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = whitespace_clean(&basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for piece in self.pattern.find_iter(&cleaned) {
            ids.extend(self.bpe(piece.as_str()));
        }
        ids
    }

    /// Turns ids back into text (`SimpleTokenizer.decode`).
    pub fn decode(&self, ids: &[u32]) -> String {
        let joined: String = ids.iter().filter_map(|&id| self.decoder.get(id as usize)).map(String::as_str).collect();
        let mut bytes = Vec::with_capacity(joined.len());
        for c in joined.replace("</w>", " ").chars() {
            match self.byte_chars.iter().position(|&b| b == c) {
                Some(byte) => bytes.push(byte as u8),
                None => bytes.extend(c.to_string().as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `clip.tokenize`: one row per text, `<|startoftext|>` ids `<|endoftext|>`
    /// then zeros, as an int64 tensor `[texts.len(), context_length]`. A text
    /// that does not fit is an error unless `truncate`, which cuts it and ends
    /// it with `<|endoftext|>`.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S], context_length: usize, truncate: bool) -> Result<Tensor> {
        if context_length < 2 {
            bail!("context length {context_length} leaves no room for the start and end tokens");
        }
        let mut rows = vec![0i64; texts.len() * context_length];
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            let mut ids = vec![self.start_of_text];
            ids.extend(self.encode(text));
            ids.push(self.end_of_text);
            if ids.len() > context_length {
                if !truncate {
                    bail!(
                        "text {i} ({}) is {} tokens long, more than the context length {context_length}; \
                         shorten it or enable truncation",
                        preview(text),
                        ids.len()
                    );
                }
                ids.truncate(context_length);
                ids[context_length - 1] = self.end_of_text;
            }
            let row = &mut rows[i * context_length..];
            for (slot, id) in row.iter_mut().zip(&ids) {
                *slot = *id as i64;
            }
        }
        Ok(Tensor::from_slice(&rows).view([texts.len() as i64, context_length as i64]))
    }

    /// The ids of one pre-split piece of text.
    fn bpe(&self, piece: &str) -> Vec<u32> {
        if piece == START_OF_TEXT || piece == END_OF_TEXT {
            return vec![self.encoder[piece]];
        }
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(piece).cloned()) {
            return ids;
        }
        let bytes = piece.as_bytes();
        let Some((&last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<u32> = init.iter().map(|&b| self.byte_ids[b as usize]).collect();
        word.push(self.byte_end_ids[last as usize]);
        // Repeatedly merge every occurrence of the best-ranked adjacent pair.
        loop {
            let best = word
                .windows(2)
                .filter_map(|pair| self.merges.get(&(pair[0], pair[1])).map(|m| (m, pair)))
                .min_by_key(|((rank, _), _)| *rank);
            let Some((&(_, merged), pair)) = best else { break };
            let (left, right) = (pair[0], pair[1]);
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == left && word[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
            if word.len() == 1 {
                break;
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(piece.to_string(), word.clone());
        }
        word
    }
}

/// GPT-2's reversible byte -> printable character map, in vocabulary order:
/// printable Latin-1 bytes stand for themselves and come first, the other
/// bytes follow, moved to U+0100 onwards.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: &u32| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    let mut pairs: Vec<(u8, char)> =
        (0u32..256).filter(printable).map(|b| (b as u8, char::from_u32(b).unwrap_or('\u{fffd}'))).collect();
    let moved = (0u32..256).filter(|b| !printable(b));
    pairs.extend(moved.zip(256u32..).map(|(b, c)| (b as u8, char::from_u32(c).unwrap_or('\u{fffd}'))));
    pairs
}

fn preview(text: &str) -> String {
    let head: String = text.chars().take(40).collect();
    if head.len() < text.len() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

/// Where the vocabulary is looked for, in order: `$TOE_PIPE_CLIP_BPE`, the
/// `clip` package of the active virtualenv (`$VIRTUAL_ENV`), then the
/// project's own `.venv` (where `scripts/setup.sh` installs `clip-anytorch`).
pub fn default_bpe_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BPE_PATH_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("${BPE_PATH_ENV} points at {}, which is not a file", path.display());
    }
    let mut venvs = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(venv));
    }
    venvs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    for venv in &venvs {
        if let Some(path) = find_in_venv(venv) {
            return Ok(path);
        }
    }
    bail!(
        "CLIP's BPE vocabulary {BPE_FILE_NAME} was not found in the `clip` package of {}; \
         run scripts/setup.sh (it installs clip-anytorch) or set ${BPE_PATH_ENV} to the file",
        venvs.iter().map(|v| v.display().to_string()).collect::<Vec<_>>().join(" or ")
    )
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python")))
        .collect();
    pythons.sort();
    pythons.into_iter().map(|p| p.join("site-packages").join("clip").join(BPE_FILE_NAME)).find(|p| p.is_file())
}
