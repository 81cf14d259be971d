//! One picture of the world: its sampled attributes, its pixels and a
//! caption that says (part of) what is in it.

use std::f32::consts::PI;

use super::render::{mix, Background, Canvas, BACKGROUNDS, COLOURS};
use super::rng::Rng;
use super::shapes::Shape;

/// One turn of the wave textures, as the world first drew them. Not
/// `TAU`: the demo's pictures (and so its results table) are defined by
/// this value, and any other would redraw every texture.
#[allow(clippy::approx_constant)]
const WAVE_TURN: f32 = 6.28;

/// How a caption starts, object or not; "a" twice, so half the captions
/// start plainly.
const CAPTION_OPENINGS: [&str; 5] = ["a", "a", "a photo of a", "an image of a", "there is a"];

/// Object sizes as a fraction of the image side (radius).
const SIZES: [(&str, f32); 3] = [("small", 0.2), ("medium", 0.28), ("large", 0.37)];

/// The attributes of an object picture, kept for captions and tests.
#[derive(Debug, Clone)]
pub struct ObjectScene {
    pub shape: Shape,
    pub colour: usize,
    pub size: usize,
    pub background: Background,
    pub background_colour: usize,
    /// Horizontal and vertical position of the centre in [0, 1].
    pub position: (f32, f32),
    pub clutter: usize,
}

impl ObjectScene {
    pub fn sample(shape: Shape, rng: &mut Rng) -> Self {
        let colour = rng.below(COLOURS.len());
        let mut background_colour = rng.below(COLOURS.len() - 1);
        if background_colour >= colour {
            background_colour += 1; // never the object's own colour
        }
        let size = rng.below(SIZES.len());
        let margin = SIZES[size].1 + 0.02;
        ObjectScene {
            shape,
            colour,
            size,
            background: *rng.pick(&BACKGROUNDS),
            background_colour,
            position: (rng.uniform(margin, 1.0 - margin), rng.uniform(margin, 1.0 - margin)),
            clutter: if rng.chance(0.3) { 2 + rng.below(6) } else { 0 },
        }
    }

    pub fn render(&self, image_size: usize, rng: &mut Rng) -> Canvas {
        let s = image_size as f32;
        let mut canvas = Canvas::new(image_size);
        canvas.background(self.background, COLOURS[self.background_colour].1, rng);
        canvas.clutter(self.clutter, rng);
        let angle = rng.uniform(-0.25, 0.25) * PI / 2.0;
        let tint = jitter_colour(COLOURS[self.colour].1, rng);
        canvas.shape(self.shape, self.position.0 * s, self.position.1 * s, SIZES[self.size].1 * s, angle, tint);
        canvas.camera(rng);
        canvas
    }

    /// A caption in the style of web alt-text or COCO: attributes are
    /// dropped at random, a shared shape trait is sometimes added. The shape
    /// is always named, colours and backgrounds in about a third of the
    /// captions: when they were named in most captions, contrastive
    /// pre-training matched pairs by colour and background and learned
    /// shapes last (zero-shot shape accuracy 0.37-0.44 after 600 steps).
    pub fn caption(&self, rng: &mut Rng) -> String {
        let mut words: Vec<&str> = Vec::new();
        let opening = *rng.pick(&CAPTION_OPENINGS);
        words.extend(opening.split(' '));
        if rng.chance(0.4) {
            words.push(SIZES[self.size].0);
        }
        if rng.chance(0.35) {
            words.push(COLOURS[self.colour].0);
        }
        words.push(self.shape.name());
        if rng.chance(0.3) {
            words.extend(rng.pick(self.shape.caption_traits()).split(' '));
        }
        if rng.chance(0.3) {
            words.extend(["on", "a"]);
            if rng.chance(0.6) {
                words.push(self.background.name());
            }
            if rng.chance(0.5) {
                words.push(COLOURS[self.background_colour].0);
            }
            words.push("background");
        }
        if rng.chance(0.25) {
            words.extend(position_phrase(self.position).split(' '));
        }
        if self.clutter > 0 && rng.chance(0.5) {
            words.extend(["with", "clutter"]);
        }
        fix_articles(&words)
    }
}

fn jitter_colour(c: [f32; 3], rng: &mut Rng) -> [f32; 3] {
    [0, 1, 2].map(|i| (c[i] + rng.uniform(-18.0, 18.0)).clamp(0.0, 255.0))
}

fn position_phrase((x, y): (f32, f32)) -> &'static str {
    match (x < 0.4, x > 0.6, y < 0.4, y > 0.6) {
        (true, _, true, _) => "in the top left",
        (_, true, true, _) => "in the top right",
        (true, _, _, true) => "in the bottom left",
        (_, true, _, true) => "in the bottom right",
        (true, _, _, _) => "on the left",
        (_, true, _, _) => "on the right",
        (_, _, true, _) => "at the top",
        (_, _, _, true) => "at the bottom",
        _ => "in the middle",
    }
}

/// Prompt templates in the world's caption language, `{}` for the class
/// name: every size (or none) with every colour (or none), alone and on
/// each named background pattern; the world's counterpart of CLIP's 80
/// ImageNet templates (180 of them).
pub fn caption_templates() -> Vec<String> {
    let sizes = std::iter::once("").chain(SIZES.iter().map(|s| s.0));
    let mut out = Vec::new();
    for size in sizes {
        for colour in std::iter::once("").chain(COLOURS.iter().map(|c| c.0)) {
            let mut words: Vec<&str> = vec!["a"];
            words.extend([size, colour, "{}"].into_iter().filter(|w| !w.is_empty()));
            out.push(fix_articles(&words));
            for background in BACKGROUNDS.iter().filter(|b| **b != Background::Plain) {
                let mut words = words.clone();
                words.extend(["on", "a", background.name(), "background"]);
                out.push(fix_articles(&words));
            }
        }
    }
    out
}

/// `sentence` with "a" made "an" before a vowel, as the captions have it.
pub fn with_articles(sentence: &str) -> String {
    fix_articles(&sentence.split(' ').collect::<Vec<_>>())
}

/// "a orange" -> "an orange", "a arrow" -> "an arrow".
fn fix_articles(words: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words.get(i + 1).is_some_and(|n| n.starts_with(['a', 'e', 'i', 'o', 'u']));
        out.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    out.join(" ")
}

/// The kinds of object-free picture the pre-training corpus holds beside
/// the object pictures, as web data holds textures and landscapes beside
/// objects: the texture set's kinds, the scene set's and the background
/// patterns full-frame.
const OBJECT_FREE_KINDS: [(&str, &str); 10] = [
    ("texture", "noise"),
    ("texture", "waves"),
    ("texture", "blobs"),
    ("scenery", "horizon"),
    ("scenery", "clutter"),
    ("pattern", "striped"),
    ("pattern", "dotted"),
    ("pattern", "checkered"),
    ("pattern", "gradient"),
    ("pattern", "plain"),
];

/// An object-free corpus picture and its caption, which names what fills
/// the frame ("a photo of waves", "a striped pattern", "a horizon").
pub fn object_free_picture(image_size: usize, rng: &mut Rng) -> (Canvas, String) {
    let (family, kind) = *rng.pick(&OBJECT_FREE_KINDS);
    let canvas = match family {
        "texture" => render_texture(kind, image_size, rng),
        "scenery" => render_scenery(kind, image_size, rng),
        _ => render_pattern(kind, image_size, rng),
    };
    let opening = *rng.pick(&CAPTION_OPENINGS);
    let mut words: Vec<&str> = opening.split(' ').collect();
    match family {
        "texture" => words.extend([kind, *rng.pick(&["texture", "pattern"])]),
        "scenery" if kind == "horizon" => {
            words.push("horizon");
            if rng.chance(0.5) {
                words.extend(["with", "no", "object"]);
            }
        }
        "scenery" => words.extend(["floor", "with", "clutter"]),
        _ => words.extend([kind, *rng.pick(&["pattern", "background"])]),
    }
    (canvas, fix_articles(&words))
}

/// Far OoD: full-frame textures with no object (the world's "Textures").
pub fn render_texture(kind: &str, image_size: usize, rng: &mut Rng) -> Canvas {
    let mut canvas = Canvas::new(image_size);
    let s = image_size as f32;
    let first = rng.below(COLOURS.len());
    let second = (first + 1 + rng.below(COLOURS.len() - 1)) % COLOURS.len();
    let (a, b) = (COLOURS[first].1, COLOURS[second].1);
    match kind {
        "noise" => {
            let grain = 1 + rng.below(3);
            for y in 0..image_size {
                for x in 0..image_size {
                    let mut cell = Rng::new(rng.next_u64() ^ ((x / grain) as u64 * 7919 + (y / grain) as u64));
                    canvas.pixels[y * image_size + x] = mix(a, b, cell.unit());
                }
            }
        }
        "waves" => {
            let (fx, fy) = (rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0));
            let phase = rng.uniform(0.0, WAVE_TURN);
            for y in 0..image_size {
                for x in 0..image_size {
                    let t = 0.5
                        + 0.5
                            * ((x as f32 * fx + y as f32 * fy) * WAVE_TURN / s + phase + (y as f32 * 0.4).sin()).sin();
                    canvas.pixels[y * image_size + x] = mix(a, b, t);
                }
            }
        }
        _ => {
            // "blobs": overlapping soft discs of many colours.
            canvas.background(Background::Plain, a, rng);
            for _ in 0..12 {
                let c = COLOURS[rng.below(COLOURS.len())].1;
                canvas.shape(
                    Shape::Circle,
                    rng.uniform(0.0, s),
                    rng.uniform(0.0, s),
                    rng.uniform(0.08, 0.25) * s,
                    0.0,
                    c,
                );
            }
        }
    }
    canvas.camera(rng);
    canvas
}

/// The background patterns that have a name in captions (all but plain):
/// the auxiliary set's classes.
pub fn pattern_names() -> Vec<String> {
    BACKGROUNDS.iter().filter(|b| **b != Background::Plain).map(|b| b.name().to_string()).collect()
}

/// A background pattern full-frame, without an object (the auxiliary
/// outlier set): the same drawing as behind the shapes, in any colour.
pub fn render_pattern(kind: &str, image_size: usize, rng: &mut Rng) -> Canvas {
    let mut canvas = Canvas::new(image_size);
    let background =
        BACKGROUNDS.iter().copied().find(|b| b.name() == kind).expect("the auxiliary set's folders are pattern names");
    let colour = jitter_colour(COLOURS[rng.below(COLOURS.len())].1, rng);
    canvas.background(background, colour, rng);
    canvas.camera(rng);
    canvas
}

/// Scene OoD: layouts without a single object (the world's "SUN/Places"):
/// a horizon between two textured regions, or a cluttered floor.
pub fn render_scenery(kind: &str, image_size: usize, rng: &mut Rng) -> Canvas {
    let mut canvas = Canvas::new(image_size);
    let sky = COLOURS[rng.below(COLOURS.len())].1;
    canvas.background(*rng.pick(&BACKGROUNDS), sky, rng);
    match kind {
        "horizon" => {
            let ground = COLOURS[rng.below(COLOURS.len())].1;
            let horizon = rng.uniform(0.35, 0.7) * image_size as f32;
            let tilt = rng.uniform(-0.2, 0.2);
            for y in 0..image_size {
                for x in 0..image_size {
                    if y as f32 > horizon + tilt * (x as f32 - image_size as f32 / 2.0) {
                        let shade = 0.85 + 0.15 * ((y as f32) / image_size as f32);
                        canvas.pixels[y * image_size + x] = ground.map(|c| c * shade);
                    }
                }
            }
            canvas.clutter(rng.below(8), rng);
        }
        _ => {
            // "clutter": many specks, no object.
            let n = image_size * image_size / 12;
            canvas.clutter(n / 2 + rng.below(n / 2 + 1), rng);
        }
    }
    canvas.camera(rng);
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_follow_the_next_word() {
        assert_eq!(fix_articles(&["a", "orange", "star"]), "an orange star");
        assert_eq!(fix_articles(&["a", "red", "arrow"]), "a red arrow");
        assert_eq!(fix_articles(&["a", "arrow", "on", "a", "plain", "background"]), "an arrow on a plain background");
    }

    #[test]
    fn captions_always_name_the_shape() {
        let mut rng = Rng::new(3);
        for k in 0..200 {
            let shape = super::super::shapes::ALL_SHAPES[k % 12];
            let scene = ObjectScene::sample(shape, &mut rng);
            let caption = scene.caption(&mut rng);
            assert!(caption.split(' ').any(|w| w == shape.name()), "{caption}");
            assert_ne!(scene.colour, scene.background_colour);
        }
    }
}
