//! Prompt templates that turn class names into sentences for CLIP's text
//! tower: TOE's own, CLIP's 80 ImageNet templates, and the demo world's
//! caption forms.

use super::outlier_text::TEMPLATES;

/// Which templates fill a class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptSet<'t> {
    /// One template, `{}` for the name (e.g. MCM's "a photo of a {}.").
    One(&'t str),
    /// "This is a photo of a {}" and TOE's four templates (5 per name): the
    /// prompts of TOE's text outliers.
    Toe,
    /// The 80 ImageNet templates of CLIP's zero-shot evaluation.
    ClipImagenet,
    /// The demo world's caption forms (180 per name): sizes, colours and
    /// background patterns around the name.
    World,
}

/// CLIP's 80 ImageNet prompt templates (Radford et al. 2021, the zero-shot
/// ImageNet notebook), in that order.
pub const CLIP_IMAGENET_TEMPLATES: [&str; 80] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
];

/// Every name through every template of `set`, name-major: the sentences
/// and the index of the name each one came from.
pub fn class_prompts(names: &[String], set: PromptSet) -> (Vec<String>, Vec<i64>) {
    let templates: Vec<String> = match set {
        PromptSet::One(t) => vec![t.to_string()],
        PromptSet::Toe => std::iter::once("This is a photo of a {}".to_string())
            .chain(TEMPLATES.iter().map(|t| t.replace("{x}", "{}")))
            .collect(),
        PromptSet::ClipImagenet => CLIP_IMAGENET_TEMPLATES.iter().map(|t| t.to_string()).collect(),
        PromptSet::World => crate::world::caption_templates(),
    };
    let mut sentences = Vec::with_capacity(names.len() * templates.len());
    let mut labels = Vec::with_capacity(sentences.capacity());
    for (label, name) in names.iter().enumerate() {
        for t in &templates {
            let sentence = t.replace("{}", name);
            sentences.push(if set == PromptSet::World { crate::world::with_articles(&sentence) } else { sentence });
            labels.push(label as i64);
        }
    }
    (sentences, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_name_through_every_template_name_major() {
        let (s, l) = class_prompts(&names(&["zebra", "tench"]), PromptSet::Toe);
        assert_eq!(s.len(), 10);
        assert_eq!(s[0], "This is a photo of a zebra");
        assert_eq!(s[1], "This is a blurry photo of zebra");
        assert_eq!(s[5], "This is a photo of a tench");
        assert_eq!(l, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        let (s, l) = class_prompts(&names(&["zebra", "tench"]), PromptSet::One("a photo of a {}."));
        assert_eq!((s, l), (names(&["a photo of a zebra.", "a photo of a tench."]), vec![0, 1]));
        let (s, _) = class_prompts(&names(&["zebra"]), PromptSet::ClipImagenet);
        assert_eq!((s.len(), s[0].as_str(), s[79].as_str()), (80, "a bad photo of a zebra.", "a tattoo of the zebra."));
        let unique: std::collections::HashSet<_> = CLIP_IMAGENET_TEMPLATES.iter().collect();
        assert_eq!(unique.len(), 80);
    }

    #[test]
    fn world_prompts_read_as_captions() {
        let (s, l) = class_prompts(&names(&["arrow", "ring"]), PromptSet::World);
        assert_eq!(s.len(), 360);
        assert_eq!(s[0], "an arrow");
        assert!(s.contains(&"a small orange arrow on a striped background".to_string()), "{:?}", &s[..20]);
        assert!(s.contains(&"an orange ring".to_string()));
        assert_eq!(l.iter().filter(|&&x| x == 1).count(), 180);
        let unique: std::collections::HashSet<_> = s.iter().collect();
        assert_eq!(unique.len(), 360);
    }
}
