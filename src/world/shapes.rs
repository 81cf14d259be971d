//! The objects of the demo world: twelve shapes, each an inside-test in the
//! object's own coordinates (u, v in [-1, 1], v pointing down), plus the
//! words captions and descriptors use for it.

use std::f32::consts::{PI, TAU};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Heart,
    Diamond,
    Hexagon,
    Pentagon,
    Ring,
    Crescent,
    Arrow,
}

pub const ALL_SHAPES: [Shape; 12] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Star,
    Shape::Cross,
    Shape::Heart,
    Shape::Diamond,
    Shape::Hexagon,
    Shape::Pentagon,
    Shape::Ring,
    Shape::Crescent,
    Shape::Arrow,
];

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Heart => "heart",
            Shape::Diamond => "diamond",
            Shape::Hexagon => "hexagon",
            Shape::Pentagon => "pentagon",
            Shape::Ring => "ring",
            Shape::Crescent => "crescent",
            Shape::Arrow => "arrow",
        }
    }

    pub fn from_name(name: &str) -> Option<Shape> {
        ALL_SHAPES.iter().copied().find(|s| s.name() == name)
    }

    /// Short phrases a caption may append ("a red star with five points").
    /// Several are shared between shapes, as real captions share attributes
    /// between classes, so the text side is not a lookup table.
    pub fn caption_traits(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["with a round edge", "with no corners"],
            Shape::Square => &["with four corners", "with straight sides"],
            Shape::Triangle => &["with three corners", "with straight sides"],
            Shape::Star => &["with five points", "with sharp points"],
            Shape::Cross => &["with four arms", "with straight sides"],
            Shape::Heart => &["with a round edge", "with a pointed bottom"],
            Shape::Diamond => &["with four corners", "with sharp points"],
            Shape::Hexagon => &["with six corners", "with straight sides"],
            Shape::Pentagon => &["with five corners", "with straight sides"],
            Shape::Ring => &["with a round edge", "with a hole"],
            Shape::Crescent => &["with a round edge", "with sharp points"],
            Shape::Arrow => &["with a pointed tip", "with straight sides"],
        }
    }

    /// Visual descriptors of the kind an LLM writes for a class, in the
    /// spirit of `descriptors_imagenet.json`.
    pub fn descriptors(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &[
                "a round shape",
                "a smooth curved edge",
                "no corners",
                "the same width in every direction",
                "a shape like a coin",
            ],
            Shape::Square => {
                &["four equal straight sides", "four right angles", "a shape like a box", "flat top and bottom edges"]
            }
            Shape::Triangle => &["three straight sides", "three corners", "a pointed top", "a wide flat base"],
            Shape::Star => {
                &["five sharp points", "points spread around a center", "a shape like a starfish", "thin pointed arms"]
            }
            Shape::Cross => {
                &["four straight arms", "two crossing bars", "a shape like a plus sign", "right angles at the center"]
            }
            Shape::Heart => {
                &["two round lobes on top", "a pointed bottom", "a curved outline", "a shape like a valentine"]
            }
            Shape::Diamond => {
                &["four corners standing on a point", "a tall narrow outline", "sharp top and bottom points"]
            }
            Shape::Hexagon => &["six straight sides", "six corners", "a shape like a honeycomb cell"],
            Shape::Pentagon => &["five straight sides", "five corners", "a flat base and a pointed top"],
            Shape::Ring => &["a round band", "a hole in the middle", "a shape like a donut"],
            Shape::Crescent => &["a curved sliver", "two sharp tips", "a shape like the moon"],
            Shape::Arrow => &["a long straight shaft", "a pointed head", "a shape that points one way"],
        }
    }

    /// Is (u, v) inside the shape? Coordinates are relative to the shape's
    /// centre in units of its radius.
    pub fn contains(self, u: f32, v: f32) -> bool {
        match self {
            Shape::Circle => u * u + v * v <= 0.92 * 0.92,
            Shape::Square => u.abs() <= 0.75 && v.abs() <= 0.75,
            Shape::Triangle => in_polygon(&regular(3, 0.95, -PI / 2.0), u, v - 0.12),
            Shape::Star => in_polygon(&star(5, 0.98, 0.42), u, v),
            Shape::Cross => (u.abs() <= 0.28 && v.abs() <= 0.9) || (v.abs() <= 0.28 && u.abs() <= 0.9),
            Shape::Heart => {
                let (x, y) = (u * 1.25, -v * 1.25 + 0.25);
                let a = x * x + y * y - 1.0;
                a * a * a - x * x * y * y * y <= 0.0
            }
            Shape::Diamond => u.abs() / 0.62 + v.abs() / 0.95 <= 1.0,
            Shape::Hexagon => in_polygon(&regular(6, 0.92, 0.0), u, v),
            Shape::Pentagon => in_polygon(&regular(5, 0.92, -PI / 2.0), u, v - 0.05),
            Shape::Ring => {
                let r2 = u * u + v * v;
                (0.52 * 0.52..=0.92 * 0.92).contains(&r2)
            }
            Shape::Crescent => {
                let (du, dv) = (u - 0.38, v + 0.12);
                u * u + v * v <= 0.92 * 0.92 && du * du + dv * dv > 0.72 * 0.72
            }
            Shape::Arrow => {
                let shaft = (-0.9..=0.15).contains(&u) && v.abs() <= 0.2;
                let head = u > 0.15 && u <= 0.9 && v.abs() <= 0.62 * (0.9 - u) / 0.75;
                shaft || head
            }
        }
    }
}

fn regular(n: usize, radius: f32, phase: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|k| {
            let a = phase + TAU * k as f32 / n as f32;
            (radius * a.cos(), radius * a.sin())
        })
        .collect()
}

fn star(points: usize, outer: f32, inner: f32) -> Vec<(f32, f32)> {
    (0..2 * points)
        .map(|k| {
            let r = if k % 2 == 0 { outer } else { inner };
            let a = -PI / 2.0 + PI * k as f32 / points as f32;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

/// Even-odd ray casting.
fn in_polygon(vertices: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = vertices.len() - 1;
    for i in 0..vertices.len() {
        let (xi, yi) = vertices[i];
        let (xj, yj) = vertices[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fraction of a grid over [-1, 1]^2 inside the shape.
    fn area(shape: Shape) -> f32 {
        let n = 200;
        let mut hits = 0;
        for i in 0..n {
            for j in 0..n {
                let u = -1.0 + 2.0 * (i as f32 + 0.5) / n as f32;
                let v = -1.0 + 2.0 * (j as f32 + 0.5) / n as f32;
                hits += shape.contains(u, v) as usize;
            }
        }
        hits as f32 / (n * n) as f32
    }

    #[test]
    fn every_shape_is_visible_and_fits_its_box() {
        for s in ALL_SHAPES {
            let a = area(s);
            assert!(a > 0.12 && a < 0.8, "{} covers {a}", s.name());
            assert!(!s.contains(0.99, 0.99), "{} touches the corner", s.name());
        }
    }

    #[test]
    fn shapes_differ_pixelwise() {
        for (i, a) in ALL_SHAPES.iter().enumerate() {
            for b in &ALL_SHAPES[i + 1..] {
                let n = 64;
                let mut diff = 0;
                for x in 0..n {
                    for y in 0..n {
                        let u = -1.0 + 2.0 * (x as f32 + 0.5) / n as f32;
                        let v = -1.0 + 2.0 * (y as f32 + 0.5) / n as f32;
                        diff += (a.contains(u, v) != b.contains(u, v)) as usize;
                    }
                }
                assert!(diff > n * n / 25, "{} vs {} differ in {diff} cells", a.name(), b.name());
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ALL_SHAPES {
            assert_eq!(Shape::from_name(s.name()), Some(s));
        }
    }
}
