//! The one thing the decoder needs from a vocabulary: encode captions for
//! training, turn one generated id back into a word, and the special ids.
//!
//! Two implementations: [`super::SentencePieceModel`] (BertGeneration's
//! `spiece.model`, for the released ZOC decoder) and [`super::WordVocab`]
//! (a word-level vocabulary built from a caption corpus, for small decoders
//! trained from scratch).

use anyhow::Result;

pub trait DecoderTokenizer {
    /// Token ids of `text`, without BOS/EOS.
    fn encode(&self, text: &str) -> Result<Vec<i64>>;
    /// One id as text, as Hugging Face's `tokenizer.decode(id)` gives it for
    /// BertGeneration (special tokens verbatim, e.g. "<s>").
    fn decode_token(&self, id: i64) -> String;
    /// A generated sequence as text, special tokens left out (as
    /// `tokenizer.decode(ids, skip_special_tokens=True)`). The default joins
    /// the tokens with spaces, right for a word-level vocabulary.
    fn decode_text(&self, ids: &[i64]) -> String {
        let special = [self.bos_id(), self.eos_id(), self.pad_id()];
        let words: Vec<String> = ids
            .iter()
            .filter(|id| !special.contains(id))
            .map(|&id| self.decode_token(id))
            .filter(|w| !w.is_empty())
            .collect();
        words.join(" ")
    }
    fn vocab_size(&self) -> usize;
    fn bos_id(&self) -> i64;
    fn eos_id(&self) -> i64;
    fn pad_id(&self) -> i64;

    /// `[BOS] caption [EOS]`, truncated to `max_len` tokens as Hugging Face's
    /// `truncation=True, max_length=max_len` cuts "<s> caption </s>" (so an
    /// over-long caption loses its EOS, as in the original training data).
    fn encode_caption(&self, caption: &str, max_len: usize) -> Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(max_len.min(128));
        ids.push(self.bos_id());
        ids.extend(self.encode(caption)?);
        ids.push(self.eos_id());
        ids.truncate(max_len.max(1));
        Ok(ids)
    }
}
