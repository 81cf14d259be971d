//! The word-level outlier decoder of ZOC/TOE: Hugging Face's
//! `BertGenerationDecoder` (`is_decoder=True, add_cross_attention=True`)
//! conditioned on a CLIP image embedding, natively in tch.
//!
//! * [`BertGenerationDecoder`] (bert_generation.rs): the model, with HF's
//!   parameter names, loading ZOC checkpoints by name;
//! * [`DecoderConfig`]: its shape, read off the weights or given;
//! * [`checkpoint`]: ZOC checkpoints (`torch.save({'net': state_dict})`)
//!   and safetensors, read and written;
//! * [`DecoderTokenizer`]: the vocabulary, either BertGeneration's
//!   sentencepiece model ([`SentencePieceModel`]) or a word-level one built
//!   from captions ([`WordVocab`]);
//! * [`generate`]: greedy decoding with the top-55 / ranks 31-55 rule
//!   ([`outlier_words`] is what the `outliers_word` op calls);
//! * [`generate_captions`]: greedy captions (what `caption_images` calls);
//! * [`model_dir`]: the model folder the ops read and write (checkpoint,
//!   tokenizer, `config.json`), opened by [`DecoderDir::open`];
//! * [`train`]: teacher-forced training on captions ([`train_decoder`] is
//!   what the `train_decoder` op calls).

pub mod bert_generation;
pub mod checkpoint;
pub mod config;
pub mod generate;
pub mod model_dir;
pub mod sentencepiece;
pub mod tokenizer;
pub mod train;
pub mod word_vocab;

pub use bert_generation::{clip_to_encoder_states, BertGenerationDecoder, DecoderCache};
pub use checkpoint::{load_decoder, read_weights, save_decoder, save_decoder_with_epoch};
pub use config::DecoderConfig;
pub use generate::{generate_captions, generate_topk, outlier_words, GenerateOptions, Generated};
pub use model_dir::{save_model_dir, DecoderDir, ModelTokenizer};
pub use sentencepiece::SentencePieceModel;
pub use tokenizer::DecoderTokenizer;
pub use train::{evaluate_loss, train_decoder, train_decoder_with, CaptionSet, EpochLog, TrainOptions, TrainReport};
pub use word_vocab::WordVocab;
