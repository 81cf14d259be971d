//! The native tokenizer gives the ids of OpenAI's `SimpleTokenizer.encode`
//! and `clip.tokenize` on awkward text.

use crate::clip_support;

use clip_support::{path_str, run_reference};
use toe_pipe::clip::tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};

fn awkward_texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        // plain captions and prompts
        "a photo of a goldfish.",
        "A bad photo of the Tench, a type of FISH",
        "itap of a {}.",
        // empty and whitespace-only
        "",
        " ",
        "\n\t  \r\n",
        // punctuation, runs of symbols, numbers (one id per digit)
        "Hello, world!!! ... ?!?! (really) [yes] {no} <maybe> @user #tag $100 50% a*b=c",
        "3.14159 and 2,718 and 1e-10 and 007 and ½ ² Ⅻ ٣",
        "---===***~~~```'''\"\"\"",
        "don't can't I'M we'RE they've she'll he'd it's it'S it'ſ rock'n'roll 'quoted'",
        // whitespace of every kind
        "multiple     spaces\n\n\nnewlines\ttabs\u{a0}nbsp\u{2003}em\u{3000}ideographic\u{2028}ls\u{85}nel",
        "   leading and trailing   ",
        "\u{1c}info\u{1f}separators\u{1d}",
        // accents, composed and decomposed, and case mapping corners
        "naïve café résumé Zürich Ångström",
        "nai\u{308}ve cafe\u{301} re\u{301}sume\u{301}",
        "İstanbul ΟΔΥΣΣΕΥΣ Straße ǅemal K Å ﬁne ﬂuﬀy ĳs",
        // realistic text in many languages (ftfy leaves it alone)
        "São Paulo à noite; Ærøskøbing på Ærø; Crème brûlée, façade, garçon",
        "Łódź, Kraków, żółć; Příliš žluťoučký kůň; Tiếng Việt có dấu; İğneada, Şanlıurfa",
        "Съешь же ещё этих мягких французских булок; Ελληνικά κείμενα; ¿Qué tal? ¡Bien!",
        "£100 — €50 · ©2023 ™ °C ±5 µm; x ≤ y ≠ z → ∞; A Â B ÂÂÂ",
        // other scripts
        "東京タワーと富士山の写真",
        "한국어 텍스트와 日本語 and 中文 mixed",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "ｆｕｌｌｗｉｄｔｈ ＴＥＸＴ ﾊﾝｶｸ",
        "𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨𝔱𝔲𝔯",
        // emoji, with modifiers, joiners and flags
        "🐟🐠🐡 fish emoji",
        "👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🏳️‍🌈 #️⃣",
        // html entities, once and twice escaped, and tags
        "fish &amp; chips &lt;3 &#39;quoted&#39; &quot;dq&quot; caf&eacute; P&EACUTE;REZ",
        "&amp;amp; &amp;lt;b&amp;gt; &amp;amp;amp;amp; &nbsp;x&#x2019;s &#8217; &#128; &copy",
        "<b>bold</b> &amp; <i>italic</i> &amp;amp;",
        "first line &amp;\nsecond <line> &amp;\nthird &amp;",
        "&notit; &ampx; &#0; &#65;&#x42;&#X43 &#xD800; &#99999999;",
        // ftfy's fixes: curly quotes, ligatures, control and C1 characters
        "\u{201c}curly\u{201d} \u{2018}quotes\u{2019} ‚low„ ʼapostrophe",
        "control\u{0}chars\u{7}and\u{7f}del\u{feff}bom\u{200b}zwsp\u{200d}zwj",
        "c1 \u{80} \u{85} \u{91}x\u{92} \u{9d}",
        "\u{1b}[31mred\u{1b}[0m terminal",
        // the special tokens typed as text
        "<|startoftext|> inside <|endoftext|> text <|ENDOFTEXT|>",
        "weird!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Long inputs: truncated by `tokenize`, an error without truncation.
    texts.push("a very long caption about a dog ".repeat(20));
    texts.push("x".repeat(2000));
    texts.push("a b c d e f g h i j k l m n o p q r s t u v w x y z ".repeat(3));
    texts
}

#[test]
fn ids_match_the_reference_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.json");
    let output = dir.path().join("ids.json");
    let texts = awkward_texts();
    std::fs::write(&input, serde_json::to_string(&texts).unwrap()).unwrap();
    run_reference(&["tokenize", path_str(&input), path_str(&output)]);
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();

    let tokenizer = Tokenizer::new().expect("the BPE vocabulary is found in the venv");
    let mut mismatches = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let expected: Vec<u32> = serde_json::from_value(reference["encode"][i].clone()).unwrap();
        let got = tokenizer.encode(text);
        if got != expected {
            mismatches.push(format!("{text:?}\n  native    {got:?}\n  reference {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "encode differs on:\n{}", mismatches.join("\n"));

    let tokens = tokenizer.tokenize(&texts, DEFAULT_CONTEXT_LENGTH, true).unwrap();
    assert_eq!(tokens.size(), [texts.len() as i64, 77]);
    assert_eq!(tokens.kind(), tch::Kind::Int64);
    let expected: Vec<Vec<i64>> = serde_json::from_value(reference["tokenize"].clone()).unwrap();
    let got: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&tokens).unwrap();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "tokenize(truncate=True) differs on {:?}", texts[i]);
    }

    // Without truncation, exactly the texts the reference rejects are errors.
    let too_long: Vec<bool> = serde_json::from_value(reference["too_long"].clone()).unwrap();
    assert!(too_long.iter().filter(|&&t| t).count() >= 2, "the list has long texts");
    for (text, &long) in texts.iter().zip(&too_long) {
        let result = tokenizer.tokenize(&[text], DEFAULT_CONTEXT_LENGTH, false);
        assert_eq!(result.is_err(), long, "{text:?}");
        if let Err(err) = result {
            assert!(err.to_string().contains("context length 77"), "{err}");
        }
    }
}

#[test]
fn decode_inverts_encode_on_clean_text() {
    let tokenizer = Tokenizer::new().unwrap();
    let ids = tokenizer.encode("a photo of a goldfish, 東京 🐟");
    assert_eq!(tokenizer.decode(&ids), "a photo of a goldfish , 東京 🐟 ");
    assert_eq!(tokenizer.vocab_size(), 49408);
    assert_eq!((tokenizer.start_of_text(), tokenizer.end_of_text()), (49406, 49407));
}

#[test]
fn a_file_that_is_not_a_vocabulary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.txt");
    std::fs::write(&path, "#version: 0.2\ni n\n").unwrap();
    let err = Tokenizer::from_file(&path).err().expect("a two-line file is rejected");
    let message = format!("{err:#}");
    assert!(message.contains("not a CLIP vocabulary") && message.contains("vocab.txt"), "{message}");
}
