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
/// fill the templates with the phrase itself.
pub fn description_sentences(phrases: &[String], templates: bool) -> Vec<String> {
    let mut out: Vec<String> = phrases.iter().map(|p| format!("This is a photo of {p}")).collect();
    if templates {
        for t in TEMPLATES {
            out.extend(phrases.iter().map(|p| fill(t, p)));
        }
    }
    out
}

/// Clean decoded words: lower-case and trim, drop ID class names (compared
/// lower-case) and non-semantic words, de-duplicate keeping first occurrence.
pub fn filter_words(words: &[String], class_names: &[String]) -> Vec<String> {
    let blocked = non_semantic_words();
    let classes: HashSet<String> = class_names.iter().map(|c| c.trim().to_lowercase()).collect();
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
        let out = filter_words(&words, &strings(&["tench", "Goldfish"]));
        assert_eq!(out, ["boat", "canoe"]);
    }

    #[test]
    fn every_single_letter_but_a_is_non_semantic() {
        let w = non_semantic_words();
        assert!(w.contains("b") && w.contains("z") && w.contains("a"));
        assert!(!w.contains("cat"));
    }
}
