//! OpenAI's CLIP, natively in tch: the BPE tokenizer, the text transformer
//! and both image towers (vision transformer and modified ResNet).

mod text_clean;
mod text_tables;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
