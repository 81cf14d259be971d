//! BertGenerationTokenizer's vocabulary: a SentencePiece model file
//! (`spiece.model`, a serialized `sentencepiece.ModelProto`), read with a
//! minimal protobuf reader and encoded with SentencePiece's unigram Viterbi.
//!
//! What we reproduce, and how it is checked (tests/testsuite/decoder_tokenizer.rs runs
//! the `sentencepiece` Python package and Hugging Face's tokenizer on a model
//! trained at test time):
//! * normalisation: the model's precompiled character map (a Darts double
//!   array of normalisation rules, e.g. `nmt_nfkc`), user-defined symbols kept
//!   verbatim, dummy "▁" prefix, collapsed and trimmed whitespace, spaces
//!   written as "▁";
//! * unigram encoding: the best-scoring segmentation (SentencePiece's
//!   "optimized" Viterbi with its tie-breaking), unknown characters scored
//!   `min_score - 10`, runs of unknown characters merged into one `<unk>`, or
//!   spelled as `<0xXX>` byte pieces when the model has byte fallback;
//! * decoding one id as Hugging Face's `decode(id)` does: the piece text with
//!   "▁" read as a space, trimmed.
//!
//! BPE-type models (and the rarely used word/char types) decode fine but are
//! refused for encoding: the released BertGeneration vocabulary is unigram.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::tokenizer::DecoderTokenizer;

/// "▁" (U+2581), SentencePiece's visible space.
const SPACE_SYMBOL: &str = "\u{2581}";
/// Penalty below the lowest piece score given to an unknown character.
const UNK_PENALTY: f32 = 10.0;

/// Piece types of `ModelProto.SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(v: u64) -> Result<Self> {
        Ok(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            other => bail!("unknown sentencepiece piece type {other}"),
        })
    }
}

/// `TrainerSpec.model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Unigram,
    Bpe,
    Word,
    Char,
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: PieceType,
}

/// A parsed SentencePiece model.
#[derive(Debug, Clone)]
pub struct SentencePieceModel {
    source: PathBuf,
    pieces: Vec<Piece>,
    model_type: ModelType,
    byte_fallback: bool,
    treat_whitespace_as_suffix: bool,
    normalizer: Normalizer,
    /// Pieces the encoder may emit (normal, user-defined), by text.
    vocab: HashMap<String, usize>,
    /// Every piece by text, for special-token look-ups.
    by_text: HashMap<String, usize>,
    /// Byte pieces `<0xXX>` by byte value, for byte fallback.
    byte_pieces: HashMap<u8, usize>,
    max_piece_bytes: usize,
    min_score: f32,
    max_score: f32,
    unk_id: usize,
    bos_id: i64,
    eos_id: i64,
    pad_id: i64,
}

impl SentencePieceModel {
    /// Read `spiece.model` (or any SentencePiece `.model` file).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading sentencepiece model {}", path.display()))?;
        Self::from_bytes(&bytes, path).with_context(|| format!("parsing sentencepiece model {}", path.display()))
    }

    /// Parse a serialized `ModelProto`; `source` names it in messages.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut trainer = TrainerSpec::default();
        let mut norm = NormalizerSpec::default();
        let mut r = ProtoReader::new(bytes);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Wire::Bytes(b)) => pieces.push(parse_piece(b)?),
                (2, Wire::Bytes(b)) => trainer = parse_trainer_spec(b)?,
                (3, Wire::Bytes(b)) => norm = parse_normalizer_spec(b)?,
                _ => {}
            }
        }
        if pieces.is_empty() {
            bail!("the model has no pieces (is this a sentencepiece .model file?)");
        }
        let normalizer = Normalizer::new(&norm, &pieces)?;

        let mut vocab = HashMap::new();
        let mut by_text = HashMap::new();
        let mut byte_pieces = HashMap::new();
        let mut max_piece_bytes = 1;
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN);
        let mut unk_id = None;
        for (id, p) in pieces.iter().enumerate() {
            by_text.entry(p.text.clone()).or_insert(id);
            match p.kind {
                PieceType::Normal | PieceType::UserDefined => {
                    if p.kind == PieceType::Normal {
                        min_score = min_score.min(p.score);
                        max_score = max_score.max(p.score);
                    }
                    vocab.insert(p.text.clone(), id);
                    max_piece_bytes = max_piece_bytes.max(p.text.len());
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Byte => {
                    if let Some(b) = parse_byte_piece(&p.text) {
                        byte_pieces.insert(b, id);
                    }
                }
                PieceType::Control | PieceType::Unused => {}
            }
        }
        if min_score > max_score {
            (min_score, max_score) = (0.0, 0.0);
        }
        let unk_id = unk_id.context("the model has no <unk> piece")?;
        // Hugging Face's BertGenerationTokenizer finds its special tokens by
        // piece text; fall back to the trainer's ids for other models.
        let id_of = |text: &str, fallback: i64| by_text.get(text).map(|&i| i as i64).unwrap_or(fallback);
        let bos_id = id_of("<s>", trainer.bos_id);
        let eos_id = id_of("</s>", trainer.eos_id);
        let pad_id = id_of("<pad>", trainer.pad_id);
        Ok(SentencePieceModel {
            source: source.to_path_buf(),
            pieces,
            model_type: trainer.model_type,
            byte_fallback: trainer.byte_fallback,
            treat_whitespace_as_suffix: trainer.treat_whitespace_as_suffix,
            normalizer,
            vocab,
            by_text,
            byte_pieces,
            max_piece_bytes,
            min_score,
            max_score,
            unk_id,
            bos_id,
            eos_id,
            pad_id,
        })
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    pub fn model_type(&self) -> ModelType {
        self.model_type
    }

    /// The id of a piece by its text (e.g. "<s>", "▁dog").
    pub fn piece_id(&self, text: &str) -> Option<usize> {
        self.by_text.get(text).copied()
    }

    /// The normalised form SentencePiece encodes ("▁Hello▁world").
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.normalize(text, self.treat_whitespace_as_suffix)
    }

    /// Encode `text` into piece ids (no BOS/EOS added).
    pub fn encode_ids(&self, text: &str) -> Result<Vec<i64>> {
        if self.model_type != ModelType::Unigram {
            bail!(
                "{}: the sentencepiece model is of type {:?}; only unigram models can be encoded here \
                 (decoding works for every type). Use a unigram vocabulary such as BertGeneration's spiece.model",
                self.source.display(),
                self.model_type
            );
        }
        let normalized = self.normalize(text);
        Ok(self.viterbi(&normalized))
    }

    /// SentencePiece's optimized unigram Viterbi: walk start positions left
    /// to right, relax every piece that starts there (shortest first), and
    /// replace a best path only on a strictly higher score.
    fn viterbi(&self, s: &str) -> Vec<i64> {
        #[derive(Clone, Copy)]
        struct Best {
            id: usize,
            score: f32,
            starts_at: Option<usize>,
        }
        let n = s.len();
        if n == 0 {
            return Vec::new();
        }
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![Best { id: 0, score: 0.0, starts_at: None }; n + 1];
        let bytes = s.as_bytes();
        let mut start = 0;
        while start < n {
            let here = best[start].score;
            let char_len = utf8_len(bytes[start]);
            let mut has_single_char_piece = false;
            let mut end = start + 1;
            while end <= n && end - start <= self.max_piece_bytes {
                if s.is_char_boundary(end) {
                    if let Some(&id) = self.vocab.get(&s[start..end]) {
                        let piece = &self.pieces[id];
                        let score = if piece.kind == PieceType::UserDefined {
                            (end - start) as f32 * self.max_score - 0.1
                        } else {
                            piece.score
                        };
                        let candidate = here + score;
                        let target = &mut best[end];
                        if target.starts_at.is_none() || candidate > target.score {
                            *target = Best { id, score: candidate, starts_at: Some(start) };
                        }
                        if end - start == char_len {
                            has_single_char_piece = true;
                        }
                    }
                }
                end += 1;
            }
            if !has_single_char_piece {
                let end = (start + char_len).min(n);
                let candidate = here + unk_score;
                let target = &mut best[end];
                if target.starts_at.is_none() || candidate > target.score {
                    *target = Best { id: self.unk_id, score: candidate, starts_at: Some(start) };
                }
            }
            start += char_len;
        }
        // Backtrack into (id, byte range) spans.
        let mut spans = Vec::new();
        let mut end = n;
        while end > 0 {
            let b = best[end];
            let start = b.starts_at.expect("every end position is reached by the unk fallback");
            spans.push((b.id, start, end));
            end = start;
        }
        spans.reverse();

        let mut ids: Vec<i64> = Vec::with_capacity(spans.len());
        let mut prev_unk = false;
        for (id, start, end) in spans {
            if id == self.unk_id && self.byte_fallback {
                for b in s[start..end].bytes() {
                    match self.byte_pieces.get(&b) {
                        Some(&bid) => ids.push(bid as i64),
                        None => ids.push(self.unk_id as i64),
                    }
                }
                continue;
            }
            // SentencePiece merges a run of unknown characters into one <unk>.
            if id == self.unk_id && prev_unk {
                continue;
            }
            prev_unk = id == self.unk_id;
            ids.push(id as i64);
        }
        ids
    }

    /// A sequence as text, as SentencePiece's `decode` gives it: pieces
    /// concatenated, control pieces (BOS, EOS, padding) left out, runs of
    /// byte pieces read as UTF-8, the unknown piece as " ⁇ " (SentencePiece's
    /// default surface), "▁" read as a space, the result trimmed.
    pub fn decode_ids(&self, ids: &[i64]) -> String {
        let mut bytes = Vec::new();
        for piece in ids.iter().filter_map(|&id| usize::try_from(id).ok().and_then(|i| self.pieces.get(i))) {
            match piece.kind {
                PieceType::Control => {}
                PieceType::Unknown => bytes.extend_from_slice(" \u{2047} ".as_bytes()),
                PieceType::Byte => bytes.extend(parse_byte_piece(&piece.text)),
                _ => bytes.extend_from_slice(piece.text.as_bytes()),
            }
        }
        utf8_per_byte_lossy(&bytes).replace(SPACE_SYMBOL, " ").trim().to_string()
    }

    /// One id as text, as Hugging Face's `BertGenerationTokenizer.decode(id)`
    /// gives it: the piece with "▁" read as a space, trimmed. Special pieces
    /// come out verbatim ("<s>").
    pub fn decode_id(&self, id: i64) -> String {
        match usize::try_from(id).ok().and_then(|i| self.pieces.get(i)) {
            Some(p) => p.text.replace(SPACE_SYMBOL, " ").trim().to_string(),
            None => String::new(),
        }
    }
}

impl DecoderTokenizer for SentencePieceModel {
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        self.encode_ids(text)
    }
    fn decode_token(&self, id: i64) -> String {
        self.decode_id(id)
    }
    fn decode_text(&self, ids: &[i64]) -> String {
        self.decode_ids(ids)
    }
    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
    fn bos_id(&self) -> i64 {
        self.bos_id
    }
    fn eos_id(&self) -> i64 {
        self.eos_id
    }
    fn pad_id(&self) -> i64 {
        self.pad_id
    }
}

/// UTF-8 text of `bytes`, each byte that does not belong to a valid
/// character read as U+FFFD, one per byte (as SentencePiece decodes byte
/// pieces; `String::from_utf8_lossy` would merge some into one).
fn utf8_per_byte_lossy(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                bytes = &rest[1..];
            }
        }
    }
}

/// Bytes in the UTF-8 sequence that starts with `lead`.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

// ---------------------------------------------------------------------------
// Normalizer

/// SentencePiece's normalizer: longest-match rewriting with the precompiled
/// character map, then whitespace handling.
#[derive(Debug, Clone)]
struct Normalizer {
    trie: Vec<u32>,
    /// NUL-separated replacement strings the trie's values point into.
    replacements: Vec<u8>,
    /// User-defined pieces, matched before (and instead of) the rules.
    user_defined: Vec<String>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl Normalizer {
    fn new(spec: &NormalizerSpec, pieces: &[Piece]) -> Result<Self> {
        let (trie, replacements) = if spec.precompiled_charsmap.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let map = &spec.precompiled_charsmap;
            if map.len() < 4 {
                bail!("precompiled_charsmap is truncated");
            }
            let trie_bytes = u32::from_le_bytes([map[0], map[1], map[2], map[3]]) as usize;
            if !trie_bytes.is_multiple_of(4) || 4 + trie_bytes > map.len() {
                bail!("precompiled_charsmap has a bad trie size {trie_bytes}");
            }
            let trie =
                map[4..4 + trie_bytes].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (trie, map[4 + trie_bytes..].to_vec())
        };
        let user_defined = pieces
            .iter()
            .filter(|p| p.kind == PieceType::UserDefined && !p.text.is_empty())
            .map(|p| p.text.clone())
            .collect();
        Ok(Normalizer {
            trie,
            replacements,
            user_defined,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
        })
    }

    /// The normalised text of the longest rule matching at the start of
    /// `input`, and how many input bytes it consumes.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a str, usize) {
        if let Some(len) = self.user_defined.iter().filter(|u| input.starts_with(u.as_str())).map(|u| u.len()).max() {
            return (&input[..len], len);
        }
        if let Some((len, value)) = self.longest_rule(input.as_bytes()) {
            let start = value as usize;
            if start <= self.replacements.len() {
                let rest = &self.replacements[start..];
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                if let Ok(s) = std::str::from_utf8(&rest[..end]) {
                    return (s, len);
                }
            }
        }
        let len = input.chars().next().map(char::len_utf8).unwrap_or(0);
        (&input[..len], len)
    }

    /// Darts-clone common-prefix search, keeping the longest match.
    fn longest_rule(&self, key: &[u8]) -> Option<(usize, u32)> {
        if self.trie.is_empty() {
            return None;
        }
        let unit = |pos: usize| self.trie.get(pos).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let value = |u: u32| u & ((1 << 31) - 1);

        let mut best = None;
        let mut pos = offset(unit(0)?);
        for (i, &c) in key.iter().enumerate() {
            pos ^= c as usize;
            let u = unit(pos)?;
            if label(u) != c as u32 {
                break;
            }
            pos ^= offset(u);
            if has_leaf(u) {
                best = Some((i + 1, value(unit(pos)?)));
            }
        }
        best
    }

    fn normalize(&self, text: &str, whitespace_as_suffix: bool) -> String {
        let space = if self.escape_whitespaces { SPACE_SYMBOL } else { " " };
        let mut input = text;
        if self.remove_extra_whitespaces {
            loop {
                let (sp, consumed) = self.normalize_prefix(input);
                if consumed == 0 || sp != " " {
                    break;
                }
                input = &input[consumed..];
            }
        }
        let mut out = String::with_capacity(text.len() * 3 / 2 + 3);
        if input.is_empty() {
            return out;
        }
        if !whitespace_as_suffix && self.add_dummy_prefix {
            out.push_str(space);
        }
        let mut prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut sp, consumed) = self.normalize_prefix(input);
            if prev_space && self.remove_extra_whitespaces {
                sp = sp.trim_start_matches(' ');
            }
            if !sp.is_empty() {
                for ch in sp.chars() {
                    if self.escape_whitespaces && ch == ' ' {
                        out.push_str(SPACE_SYMBOL);
                    } else {
                        out.push(ch);
                    }
                }
                prev_space = sp.ends_with(' ');
            }
            input = &input[consumed.max(1).min(input.len())..];
            if !self.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if whitespace_as_suffix && self.add_dummy_prefix {
            out.push_str(space);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Minimal protobuf reading of ModelProto (fields from sentencepiece_model.proto)

#[derive(Debug)]
struct TrainerSpec {
    model_type: ModelType,
    byte_fallback: bool,
    treat_whitespace_as_suffix: bool,
    bos_id: i64,
    eos_id: i64,
    pad_id: i64,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        // proto2 defaults
        TrainerSpec {
            model_type: ModelType::Unigram,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
        }
    }
}

#[derive(Debug)]
struct NormalizerSpec {
    precompiled_charsmap: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

fn parse_piece(bytes: &[u8]) -> Result<Piece> {
    let mut p = Piece { text: String::new(), score: 0.0, kind: PieceType::Normal };
    let mut r = ProtoReader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Wire::Bytes(b)) => p.text = String::from_utf8(b.to_vec()).context("a piece is not valid UTF-8")?,
            (2, Wire::Fixed32(v)) => p.score = f32::from_bits(v),
            (3, Wire::Varint(v)) => p.kind = PieceType::from_proto(v)?,
            _ => {}
        }
    }
    Ok(p)
}

fn parse_trainer_spec(bytes: &[u8]) -> Result<TrainerSpec> {
    let mut t = TrainerSpec::default();
    let mut r = ProtoReader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (3, Wire::Varint(v)) => {
                t.model_type = match v {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    other => bail!("unknown sentencepiece model type {other}"),
                }
            }
            (24, Wire::Varint(v)) => t.treat_whitespace_as_suffix = v != 0,
            (35, Wire::Varint(v)) => t.byte_fallback = v != 0,
            (41, Wire::Varint(v)) => t.bos_id = v as i32 as i64,
            (42, Wire::Varint(v)) => t.eos_id = v as i32 as i64,
            (43, Wire::Varint(v)) => t.pad_id = v as i32 as i64,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_normalizer_spec(bytes: &[u8]) -> Result<NormalizerSpec> {
    let mut n = NormalizerSpec::default();
    let mut r = ProtoReader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (2, Wire::Bytes(b)) => n.precompiled_charsmap = b.to_vec(),
            (3, Wire::Varint(v)) => n.add_dummy_prefix = v != 0,
            (4, Wire::Varint(v)) => n.remove_extra_whitespaces = v != 0,
            (5, Wire::Varint(v)) => n.escape_whitespaces = v != 0,
            _ => {}
        }
    }
    Ok(n)
}

enum Wire<'a> {
    Varint(u64),
    /// A 64-bit fixed field (no ModelProto field we read has one).
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct ProtoReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ProtoReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        ProtoReader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).context("truncated protobuf varint")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("protobuf varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).context("truncated protobuf field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let len = self.varint()? as usize;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            other => bail!("unsupported protobuf wire type {other} (field {field})"),
        };
        Ok(Some((field, wire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_reader_reads_varints_and_fields() {
        // field 1 (bytes "ab"), field 3 varint 300, field 2 fixed32 1.5f
        let mut buf = vec![0x0a, 2, b'a', b'b', 0x18, 0xac, 0x02, 0x15];
        buf.extend_from_slice(&1.5f32.to_bits().to_le_bytes());
        let p = parse_piece(&buf);
        assert!(p.is_err(), "type 300 is not a piece type");
        let mut r = ProtoReader::new(&buf);
        let mut seen = Vec::new();
        while let Some((f, w)) = r.next_field().unwrap() {
            seen.push(match w {
                Wire::Bytes(b) => format!("{f}:{}", String::from_utf8_lossy(b)),
                Wire::Varint(v) => format!("{f}:{v}"),
                Wire::Fixed32(v) => format!("{f}:{}", f32::from_bits(v)),
                Wire::Fixed64 => format!("{f}:fixed64"),
            });
        }
        assert_eq!(seen, ["1:ab", "3:300", "2:1.5"]);
        assert!(ProtoReader::new(&[0x0a, 5, b'a']).next_field().is_err(), "truncated bytes");
    }

    fn toy_model(byte_fallback: bool) -> SentencePieceModel {
        let piece = |t: &str, s: f32, k: PieceType| Piece { text: t.into(), score: s, kind: k };
        let mut pieces = vec![
            piece("<pad>", 0.0, PieceType::Control),
            piece("</s>", 0.0, PieceType::Control),
            piece("<s>", 0.0, PieceType::Control),
            piece("<unk>", 0.0, PieceType::Unknown),
            piece("▁", -2.0, PieceType::Normal),
            piece("▁a", -1.0, PieceType::Normal),
            piece("b", -3.0, PieceType::Normal),
            piece("▁ab", -3.5, PieceType::Normal),
            piece("a", -2.5, PieceType::Normal),
        ];
        for b in 0..=255u8 {
            pieces.push(piece(&format!("<0x{b:02X}>"), 0.0, PieceType::Byte));
        }
        let spec = NormalizerSpec::default();
        let normalizer = Normalizer::new(&spec, &pieces).unwrap();
        let mut m = SentencePieceModel {
            source: PathBuf::from("toy"),
            pieces: Vec::new(),
            model_type: ModelType::Unigram,
            byte_fallback,
            treat_whitespace_as_suffix: false,
            normalizer,
            vocab: HashMap::new(),
            by_text: HashMap::new(),
            byte_pieces: HashMap::new(),
            max_piece_bytes: 0,
            min_score: -3.5,
            max_score: -1.0,
            unk_id: 3,
            bos_id: 2,
            eos_id: 1,
            pad_id: 0,
        };
        for (i, p) in pieces.iter().enumerate() {
            m.by_text.insert(p.text.clone(), i);
            match p.kind {
                PieceType::Normal => {
                    m.vocab.insert(p.text.clone(), i);
                    m.max_piece_bytes = m.max_piece_bytes.max(p.text.len());
                }
                PieceType::Byte => {
                    m.byte_pieces.insert(parse_byte_piece(&p.text).unwrap(), i);
                }
                _ => {}
            }
        }
        m.pieces = pieces;
        m
    }

    #[test]
    fn viterbi_picks_best_segmentation_and_merges_unknowns() {
        let m = toy_model(false);
        assert_eq!(m.normalize("  ab   a "), "▁ab▁a");
        // "▁ab" (-3.5) beats "▁a"+"b" (-4.0)
        assert_eq!(m.encode_ids("ab a").unwrap(), vec![7, 5]);
        // unknown "xy" becomes one <unk>
        assert_eq!(m.encode_ids("axy").unwrap(), vec![5, 3]);
        assert_eq!(m.decode_id(7), "ab");
        assert_eq!(m.decode_id(2), "<s>");
        assert_eq!(m.decode_id(999), "");
    }

    #[test]
    fn byte_fallback_spells_unknown_bytes() {
        let m = toy_model(true);
        let ids = m.encode_ids("aé").unwrap();
        // "▁a", then é = C3 A9 as byte pieces
        assert_eq!(ids, vec![5, 9 + 0xc3, 9 + 0xa9]);
    }
}
