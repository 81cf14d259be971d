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
