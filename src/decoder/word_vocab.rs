//! A word-level vocabulary built from a caption corpus, for decoders trained
//! from scratch on a small world (the demo's captions use about 100 words).
//!
//! Words are runs of lower-case letters and digits (apostrophes kept inside a
//! word); other characters separate words and are dropped, so a generated
//! token is always a whole lower-case word. The special tokens take the ids
//! BertGeneration's vocabulary gives them (`<pad>` 0, `</s>` 1, `<s>` 2,
//! `<unk>` 3), then words follow by falling count, ties alphabetical.
//! Saved as a text file, one token per line, line number = id.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::tokenizer::DecoderTokenizer;

pub const PAD: &str = "<pad>";
pub const EOS: &str = "</s>";
pub const BOS: &str = "<s>";
pub const UNK: &str = "<unk>";
const SPECIALS: [&str; 4] = [PAD, EOS, BOS, UNK];

#[derive(Debug, Clone, PartialEq)]
pub struct WordVocab {
    tokens: Vec<String>,
    ids: HashMap<String, i64>,
}

/// Lower-case words of `text` (see the module docs).
pub fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for ch in text.chars().flat_map(char::to_lowercase) {
        if ch.is_alphanumeric() || (ch == '\'' && !cur.is_empty()) {
            cur.push(ch);
        } else if !cur.is_empty() {
            words.push(std::mem::take(&mut cur).trim_end_matches('\'').to_string());
        }
    }
    if !cur.is_empty() {
        words.push(cur.trim_end_matches('\'').to_string());
    }
    words
}

impl WordVocab {
    /// Build from captions, keeping words seen at least `min_count` times.
    pub fn build<S: AsRef<str>>(captions: &[S], min_count: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for c in captions {
            for w in split_words(c.as_ref()) {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut words: Vec<(String, usize)> =
            counts.into_iter().filter(|(w, n)| *n >= min_count.max(1) && !SPECIALS.contains(&w.as_str())).collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let tokens = SPECIALS.iter().map(|s| s.to_string()).chain(words.into_iter().map(|(w, _)| w)).collect();
        Self::from_tokens(tokens).expect("specials first, words unique")
    }

    /// From a token list whose first four entries are the special tokens.
    pub fn from_tokens(tokens: Vec<String>) -> Result<Self> {
        if tokens.len() < SPECIALS.len() || tokens[..SPECIALS.len()] != SPECIALS {
            bail!("a word vocabulary must start with the special tokens {SPECIALS:?}");
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if ids.insert(t.clone(), i as i64).is_some() {
                bail!("token {t:?} appears twice in the vocabulary");
            }
        }
        Ok(WordVocab { tokens, ids })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn unk_id(&self) -> i64 {
        3
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.tokens.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing word vocabulary {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading word vocabulary {}", path.display()))?;
        let tokens = text.lines().map(str::to_string).collect();
        Self::from_tokens(tokens).with_context(|| format!("word vocabulary {}", path.display()))
    }
}

impl DecoderTokenizer for WordVocab {
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Ok(split_words(text).iter().map(|w| self.ids.get(w).copied().unwrap_or(self.unk_id())).collect())
    }
    fn decode_token(&self, id: i64) -> String {
        usize::try_from(id).ok().and_then(|i| self.tokens.get(i)).cloned().unwrap_or_default()
    }
    fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    fn bos_id(&self) -> i64 {
        2
    }
    fn eos_id(&self) -> i64 {
        1
    }
    fn pad_id(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_orders_and_encodes() {
        let v = WordVocab::build(&["A small red star.", "a red circle, on stripes", "the dog's red ball"], 1);
        assert_eq!(&v.tokens()[..5], &["<pad>", "</s>", "<s>", "<unk>", "red"]);
        assert_eq!(v.tokens()[5], "a");
        let ids = v.encode("Red  STAR!! zebra").unwrap();
        assert_eq!(v.decode_token(ids[0]), "red");
        assert_eq!(v.decode_token(ids[1]), "star");
        assert_eq!(ids[2], v.unk_id());
        assert!(v.tokens().contains(&"dog's".to_string()));
        assert_eq!(v.encode_caption("red star", 3).unwrap(), vec![2, 4, v.encode("star").unwrap()[0]]);
        let min2 = WordVocab::build(&["red star", "red dot"], 2);
        assert_eq!(min2.vocab_size(), 5);
    }

    #[test]
    fn save_load_roundtrip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let v = WordVocab::build(&["a b c", "b c", "c"], 1);
        let p = dir.path().join("vocab.txt");
        v.save(&p).unwrap();
        assert_eq!(WordVocab::load(&p).unwrap(), v);
        std::fs::write(&p, "hello\nworld\n").unwrap();
        let err = format!("{:#}", WordVocab::load(&p).unwrap_err());
        assert!(err.contains("vocab.txt") && err.contains("special tokens"), "{err}");
    }
}
