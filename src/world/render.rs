//! Drawing: an RGB canvas, the five background kinds, anti-aliased shapes,
//! clutter specks and sensor noise.

use super::rng::Rng;
use super::shapes::Shape;

/// Named colours shared by objects, backgrounds and captions.
pub const COLOURS: [(&str, [f32; 3]); 8] = [
    ("red", [215.0, 45.0, 40.0]),
    ("green", [45.0, 160.0, 60.0]),
    ("blue", [40.0, 75.0, 215.0]),
    ("yellow", [235.0, 205.0, 45.0]),
    ("purple", [135.0, 60.0, 185.0]),
    ("orange", [240.0, 135.0, 30.0]),
    ("white", [238.0, 238.0, 238.0]),
    ("black", [28.0, 28.0, 28.0]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Plain,
    Striped,
    Dotted,
    Checkered,
    Gradient,
}

pub const BACKGROUNDS: [Background; 5] =
    [Background::Plain, Background::Striped, Background::Dotted, Background::Checkered, Background::Gradient];

impl Background {
    pub fn name(self) -> &'static str {
        match self {
            Background::Plain => "plain",
            Background::Striped => "striped",
            Background::Dotted => "dotted",
            Background::Checkered => "checkered",
            Background::Gradient => "gradient",
        }
    }
}

/// A square RGB image with float channels in [0, 255].
pub struct Canvas {
    pub size: usize,
    pub pixels: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn new(size: usize) -> Self {
        Canvas { size, pixels: vec![[0.0; 3]; size * size] }
    }

    fn blend(&mut self, x: usize, y: usize, colour: [f32; 3], alpha: f32) {
        let p = &mut self.pixels[y * self.size + x];
        for c in 0..3 {
            p[c] = p[c] * (1.0 - alpha) + colour[c] * alpha;
        }
    }

    /// Fill with a background of `kind` in `colour`, with a second tone
    /// derived from it (lighter for dark colours, darker for light ones).
    pub fn background(&mut self, kind: Background, colour: [f32; 3], rng: &mut Rng) {
        let other = second_tone(colour);
        let s = self.size as f32;
        let period = rng.uniform(0.18, 0.3) * s;
        let angle = rng.uniform(0.0, std::f32::consts::PI);
        let (ca, sa) = (angle.cos(), angle.sin());
        let phase = rng.uniform(0.0, period);
        for y in 0..self.size {
            for x in 0..self.size {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let t = match kind {
                    Background::Plain => 0.0,
                    Background::Striped => {
                        let d = fx * ca + fy * sa + phase;
                        ((d / period).floor() as i64).rem_euclid(2) as f32
                    }
                    Background::Dotted => {
                        let gx = ((fx + phase) / period).fract() - 0.5;
                        let gy = ((fy + phase) / period).fract() - 0.5;
                        (gx * gx + gy * gy < 0.07) as u8 as f32
                    }
                    Background::Checkered => {
                        let cx = ((fx + phase) / period).floor() as i64;
                        let cy = ((fy + phase) / period).floor() as i64;
                        (cx + cy).rem_euclid(2) as f32
                    }
                    Background::Gradient => ((fx * ca + fy * sa) / (s * 1.42) + 0.5).clamp(0.0, 1.0),
                };
                self.pixels[y * self.size + x] = mix(colour, other, t);
            }
        }
    }

    /// Draw `shape` centred at (cx, cy) with radius r (pixels), rotated by
    /// `angle`, anti-aliased by 4x4 supersampling.
    pub fn shape(&mut self, shape: Shape, cx: f32, cy: f32, r: f32, angle: f32, colour: [f32; 3]) {
        let (ca, sa) = (angle.cos(), angle.sin());
        let lo_x = ((cx - r).floor().max(0.0)) as usize;
        let hi_x = ((cx + r).ceil() as usize).min(self.size);
        let lo_y = ((cy - r).floor().max(0.0)) as usize;
        let hi_y = ((cy + r).ceil() as usize).min(self.size);
        for y in lo_y..hi_y {
            for x in lo_x..hi_x {
                let mut hits = 0;
                for sy in 0..4 {
                    for sx in 0..4 {
                        let px = x as f32 + (sx as f32 + 0.5) / 4.0 - cx;
                        let py = y as f32 + (sy as f32 + 0.5) / 4.0 - cy;
                        let u = (px * ca + py * sa) / r;
                        let v = (-px * sa + py * ca) / r;
                        hits += shape.contains(u, v) as u32;
                    }
                }
                if hits > 0 {
                    self.blend(x, y, colour, hits as f32 / 16.0);
                }
            }
        }
    }

    /// Small specks of random colour anywhere on the image.
    pub fn clutter(&mut self, count: usize, rng: &mut Rng) {
        for _ in 0..count {
            let colour = COLOURS[rng.below(COLOURS.len())].1;
            let side = 1 + rng.below(2);
            let x0 = rng.below(self.size - side + 1);
            let y0 = rng.below(self.size - side + 1);
            for y in y0..y0 + side {
                for x in x0..x0 + side {
                    self.blend(x, y, colour, 0.85);
                }
            }
        }
    }

    /// Global brightness jitter plus Gaussian sensor noise: no two pictures
    /// of the same scene are identical.
    pub fn camera(&mut self, rng: &mut Rng) {
        let brightness = rng.uniform(0.85, 1.1);
        let sigma = 4.0;
        for p in &mut self.pixels {
            for c in p.iter_mut() {
                *c = (*c * brightness + sigma * rng.normal()).clamp(0.0, 255.0);
            }
        }
    }

    pub fn to_rgb8(&self) -> image::RgbImage {
        let mut img = image::RgbImage::new(self.size as u32, self.size as u32);
        for (i, p) in self.pixels.iter().enumerate() {
            let px = [p[0].round() as u8, p[1].round() as u8, p[2].round() as u8];
            img.put_pixel((i % self.size) as u32, (i / self.size) as u32, image::Rgb(px));
        }
        img
    }
}

pub fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn second_tone(c: [f32; 3]) -> [f32; 3] {
    let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    if luma > 128.0 {
        mix(c, [0.0; 3], 0.35)
    } else {
        mix(c, [255.0; 3], 0.35)
    }
}
