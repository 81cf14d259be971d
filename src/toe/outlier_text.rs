//! The text of textual outliers: description sentences, word sentences,
//! templates and the non-semantic word filter, with the constants the
//! original TOE code uses (its defaults, not what its help texts claim).

use std::collections::HashSet;

/// The four templates applied to a word or phrase `x`.
pub const TEMPLATES: [&str; 4] = [
    "This is a blurry photo of {x}",
    "This is a photo of many {x}",
    "This is a photo of the large {x}",
    "This is a photo of the small {x}",
];

/// Words the word-level generator drops: no visual meaning of their own.
pub fn non_semantic_words() -> HashSet<String> {
    let mut words: HashSet<String> = [
        "", "a", "an", "the", "ar", "ae", "at", "ap", "af", "al", "be", "bo", "bu", "bl", "bi", "cl", "el", "ep", "fo",
        "fl", "ge", "gr", "go", "he", "hi", "in", "it", "je", "on", "pe", "pi", "re", "sk", "sc", "se", "so", "sm",
        "sl", "st", "tr", "we", "un", "del", "ath", "2", "3", "4", "5", "two", "three", "four", "no", "or", "only",
        "very", "many", "there", "and", "\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in 'b'..='z' {
        words.insert(c.to_string());
    }
    words
}

fn fill(template: &str, x: &str) -> String {
    template.replace("{x}", x)
}

/// Description-level outliers: "This is a photo of " + phrase for every
/// phrase in order, then (with templates) each template filled with each
/// phrase, template by template. The original cut "a photo of " off with
/// `str.strip`, which strips a *set of characters* and mangles words; we
/// fill the templates with the phrase itself ([`description_sentences_as_released`]
/// reproduces the original).
pub fn description_sentences(phrases: &[String], templates: bool) -> Vec<String> {
    let mut out = base_sentences(phrases);
    if templates {
        for t in TEMPLATES {
            out.extend(phrases.iter().map(|p| fill(t, p)));
        }
    }
    out
}

/// Description-level outliers as the original's `get_textual_outliers`
/// makes them: the base sentences, then for each sentence s in order the
/// four templates filled with `s.strip("a photo of ")`. Python's `strip`
/// removes any of the characters `a`, ` `, `p`, `h`, `o`, `t`, `f` from both
/// ends, so "This is a photo of a freshwater fish" (its capital T stops the
/// left side) becomes "This is a photo of a freshwater fis" and the template
/// "This is a blurry photo of This is a photo of a freshwater fis".
pub fn description_sentences_as_released(phrases: &[String], templates: bool) -> Vec<String> {
    let base = base_sentences(phrases);
    let mut out = base.clone();
    if templates {
        for sentence in &base {
            let stripped = python_strip(sentence, "a photo of ");
            out.extend(TEMPLATES.iter().map(|t| fill(t, stripped)));
        }
    }
    out
}

fn base_sentences(phrases: &[String]) -> Vec<String> {
    phrases.iter().map(|p| format!("This is a photo of {p}")).collect()
}

/// Python's `s.strip(chars)`: drop leading and trailing characters that
/// are in `chars`.
pub fn python_strip<'s>(s: &'s str, chars: &str) -> &'s str {
    s.trim_matches(|c| chars.contains(c))
}

/// How decoded words are compared with the ID class names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassNameMatch {
    /// Lower-case and trimmed on both sides: "chihuahua" is the class
    /// "Chihuahua".
    AnyCase,
    /// As the original's `set(words) - set(test_labels)`: a lower-cased word
    /// is dropped only when a class name is exactly that string, so the
    /// capitalised ImageNet names ("Chihuahua", "Granny Smith") never are.
    Exact,
}

/// Clean decoded words: lower-case and trim, drop ID class names (see
/// [`ClassNameMatch`]) and non-semantic words, de-duplicate keeping first
/// occurrence.
pub fn filter_words(words: &[String], class_names: &[String], matching: ClassNameMatch) -> Vec<String> {
    let blocked = non_semantic_words();
    let classes: HashSet<String> = match matching {
        ClassNameMatch::AnyCase => class_names.iter().map(|c| c.trim().to_lowercase()).collect(),
        ClassNameMatch::Exact => class_names.iter().cloned().collect(),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in words {
        let w = w.trim().to_lowercase();
        if blocked.contains(&w) || classes.contains(&w) || !seen.insert(w.clone()) {
            continue;
        }
        out.push(w);
    }
    out
}

/// Word-level outliers: "This is a photo of a w" for each word, then (with
/// templates) each template filled with each word.
pub fn word_sentences(words: &[String], templates: bool) -> Vec<String> {
    let mut out: Vec<String> = words.iter().map(|w| format!("This is a photo of a {w}")).collect();
    if templates {
        for t in TEMPLATES {
            out.extend(words.iter().map(|w| fill(t, w)));
        }
    }
    out
}

/// Unique strings in first-occurrence order (caption-level outliers keep
/// the unique selected captions).
pub fn unique(strings: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    strings.iter().filter(|s| seen.insert(s.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn descriptions_with_templates_are_five_per_phrase() {
        let out = description_sentences(&strings(&["a freshwater fish", "fins"]), true);
        assert_eq!(out.len(), 10);
        assert_eq!(out[0], "This is a photo of a freshwater fish");
        assert_eq!(out[2], "This is a blurry photo of a freshwater fish");
        assert_eq!(out[9], "This is a photo of the small fins");
        assert_eq!(description_sentences(&strings(&["fish"]), false), ["This is a photo of fish"]);
    }

    #[test]
    fn word_filter_drops_classes_noise_and_duplicates() {
        let words = strings(&["Boat", "the", "q", "goldfish", "boat", "st", "\"", "canoe", ""]);
        let out = filter_words(&words, &strings(&["tench", "Goldfish"]), ClassNameMatch::AnyCase);
        assert_eq!(out, ["boat", "canoe"]);
        // The original's exact match keeps "goldfish": its class is "Goldfish".
        let out = filter_words(&words, &strings(&["tench", "Goldfish"]), ClassNameMatch::Exact);
        assert_eq!(out, ["boat", "goldfish", "canoe"]);
    }

    #[test]
    fn released_descriptions_strip_characters_not_a_prefix() {
        let out = description_sentences_as_released(&strings(&["a freshwater fish", "a photo"]), true);
        assert_eq!(out.len(), 10);
        assert_eq!(out[..2], ["This is a photo of a freshwater fish", "This is a photo of a photo"]);
        // four templates per sentence, in sentence order, filled with the
        // stripped *sentence*: 'h' goes from "fish", the capital T stays
        assert_eq!(out[2], "This is a blurry photo of This is a photo of a freshwater fis");
        assert_eq!(out[5], "This is a photo of the small This is a photo of a freshwater fis");
        // "...of a photo" loses every trailing character in the set
        assert_eq!(out[6], "This is a blurry photo of This is");
        assert_eq!(python_strip("a photo of", "a photo of "), "");
        assert_eq!(description_sentences_as_released(&strings(&["fish"]), false), ["This is a photo of fish"]);
    }

    #[test]
    fn every_single_letter_but_a_is_non_semantic() {
        let w = non_semantic_words();
        assert!(w.contains("b") && w.contains("z") && w.contains("a"));
        assert!(!w.contains("cat"));
    }
}
