//! The local image renderer: a deterministic composition seeded by the prompt (palette,
//! gradient, shapes, a landscape of hills, stars at night) with the prompt as a caption set in
//! DejaVu Sans, encoded as PNG. An illustrative renderer, not a diffusion model: the same prompt
//! always gives the same picture, and words of the prompt steer its colours and scene.

use super::seeded::{fnv1a, Rng};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};

/// DejaVu Sans (fonts-dejavu-core; licence beside it), built in so rendering needs no
/// installed font.
static FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// The font, parsed once.
fn font() -> &'static FontRef<'static> {
    static FONT: std::sync::LazyLock<FontRef<'static>> = std::sync::LazyLock::new(|| {
        FontRef::try_from_slice(FONT_BYTES).expect("the built-in font parses")
    });
    &FONT
}

/// The longest prefix of `text` (in whole characters) no wider than `width`.
fn fit(text: &str, size: f32, width: f32) -> &str {
    let sf = font().as_scaled(PxScale::from(size));
    let mut w = 0.0;
    let mut prev = None;
    for (i, ch) in text.char_indices() {
        let id = sf.glyph_id(ch);
        if let Some(p) = prev {
            w += sf.kern(p, id);
        }
        w += sf.h_advance(id);
        prev = Some(id);
        if w > width {
            return &text[..i];
        }
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rgb(pub f32, pub f32, pub f32);

fn hsl(h: f32, s: f32, l: f32) -> Rgb {
    let h = h.rem_euclid(360.0) / 360.0;
    let q = if l < 0.5 {
        l * (1.0 + s)
    } else {
        l + s - l * s
    };
    let p = 2.0 * l - q;
    let t = |mut t: f32| {
        t = t.rem_euclid(1.0);
        if t < 1.0 / 6.0 {
            p + (q - p) * 6.0 * t
        } else if t < 0.5 {
            q
        } else if t < 2.0 / 3.0 {
            p + (q - p) * (2.0 / 3.0 - t) * 6.0
        } else {
            p
        }
    };
    Rgb(t(h + 1.0 / 3.0), t(h), t(h - 1.0 / 3.0))
}

/// An RGB canvas of f32 channels in 0..1.
pub(crate) struct Canvas {
    pub w: u32,
    pub h: u32,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn new(w: u32, h: u32) -> Self {
        Canvas {
            w,
            h,
            px: vec![[0.0; 3]; (w * h) as usize],
        }
    }

    #[inline]
    fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.w) || y >= i64::from(self.h) || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let p = &mut self.px[(y as u32 * self.w + x as u32) as usize];
        p[0] += (c.0 - p[0]) * a;
        p[1] += (c.1 - p[1]) * a;
        p[2] += (c.2 - p[2]) * a;
    }

    /// A linear gradient from `a` to `b` along direction `angle` (radians).
    pub fn gradient(&mut self, a: Rgb, b: Rgb, angle: f32) {
        let (dx, dy) = (angle.cos(), angle.sin());
        let (w, h) = (self.w as f32, self.h as f32);
        let span = (dx.abs() * w + dy.abs() * h).max(1.0);
        let off = (dx.min(0.0) * w) + (dy.min(0.0) * h);
        for y in 0..self.h {
            for x in 0..self.w {
                let t = ((x as f32 * dx + y as f32 * dy - off) / span).clamp(0.0, 1.0);
                self.px[(y * self.w + x) as usize] = [
                    a.0 + (b.0 - a.0) * t,
                    a.1 + (b.1 - a.1) * t,
                    a.2 + (b.2 - a.2) * t,
                ];
            }
        }
    }

    /// A filled circle with an anti-aliased edge.
    pub fn circle(&mut self, cx: f32, cy: f32, r: f32, c: Rgb, alpha: f32) {
        let (x0, x1) = ((cx - r - 1.0).floor() as i64, (cx + r + 1.0).ceil() as i64);
        let (y0, y1) = ((cy - r - 1.0).floor() as i64, (cy + r + 1.0).ceil() as i64);
        for y in y0.max(0)..y1.min(i64::from(self.h)) {
            for x in x0.max(0)..x1.min(i64::from(self.w)) {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                let cover = (r - d + 0.5).clamp(0.0, 1.0);
                self.blend(x, y, c, alpha * cover);
            }
        }
    }

    /// A filled axis-aligned rectangle.
    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, c: Rgb, alpha: f32) {
        for py in (y.max(0.0) as i64)..((y + h).min(self.h as f32) as i64) {
            for px in (x.max(0.0) as i64)..((x + w).min(self.w as f32) as i64) {
                self.blend(px, py, c, alpha);
            }
        }
    }

    /// A filled triangle.
    pub fn triangle(&mut self, p: [(f32, f32); 3], c: Rgb, alpha: f32) {
        let edge = |a: (f32, f32), b: (f32, f32), x: f32, y: f32| {
            (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
        };
        let area = edge(p[0], p[1], p[2].0, p[2].1);
        if area.abs() < 1e-3 {
            return;
        }
        let xs = p.iter().map(|q| q.0);
        let ys = p.iter().map(|q| q.1);
        let (x0, x1) = (
            xs.clone().fold(f32::MAX, f32::min),
            xs.fold(f32::MIN, f32::max),
        );
        let (y0, y1) = (
            ys.clone().fold(f32::MAX, f32::min),
            ys.fold(f32::MIN, f32::max),
        );
        for y in (y0.max(0.0) as i64)..=(y1.min(self.h as f32 - 1.0) as i64) {
            for x in (x0.max(0.0) as i64)..=(x1.min(self.w as f32 - 1.0) as i64) {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let w0 = edge(p[1], p[2], fx, fy) * area.signum();
                let w1 = edge(p[2], p[0], fx, fy) * area.signum();
                let w2 = edge(p[0], p[1], fx, fy) * area.signum();
                if w0 >= 0.0 && w1 >= 0.0 && w2 >= 0.0 {
                    self.blend(x, y, c, alpha);
                }
            }
        }
    }

    /// A silhouette of hills: everything below `base + amp * waves(x)`.
    pub fn hills(&mut self, base: f32, amp: f32, freq: f32, phase: f32, c: Rgb, alpha: f32) {
        for x in 0..self.w {
            let t = x as f32 / self.w as f32;
            let top = base
                + amp
                    * (0.6 * (t * freq * std::f32::consts::TAU + phase).sin()
                        + 0.4 * (t * freq * 2.3 * std::f32::consts::TAU + phase * 1.7).sin());
            for y in (top.max(0.0) as u32)..self.h {
                self.blend(i64::from(x), i64::from(y), c, alpha);
            }
        }
    }

    /// The width of `text` at pixel size `size`.
    pub fn text_width(&self, text: &str, size: f32) -> f32 {
        let f = font();
        let sf = f.as_scaled(PxScale::from(size));
        let mut w = 0.0;
        let mut prev = None;
        for ch in text.chars() {
            let id = sf.glyph_id(ch);
            if let Some(p) = prev {
                w += sf.kern(p, id);
            }
            w += sf.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Draws one line of text with its top-left at (x, y).
    pub fn text(&mut self, text: &str, x: f32, y: f32, size: f32, c: Rgb) {
        let f = font();
        let scale = PxScale::from(size);
        let sf = f.as_scaled(scale);
        let baseline = y + sf.ascent();
        let mut pen = x;
        let mut prev = None;
        for ch in text.chars() {
            let id = sf.glyph_id(ch);
            if let Some(p) = prev {
                pen += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, baseline));
            pen += sf.h_advance(id);
            prev = Some(id);
            if let Some(outline) = f.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, cover| {
                    self.blend(
                        b.min.x as i64 + i64::from(gx),
                        b.min.y as i64 + i64::from(gy),
                        c,
                        cover,
                    );
                });
            }
        }
    }

    /// Breaks `text` into lines no wider than `width`; at most `max_lines`, the last one
    /// ending in "…" if text was left out.
    pub fn wrap(&self, text: &str, size: f32, width: f32, max_lines: usize) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut truncated = false;
        for word in text.split_whitespace() {
            let candidate = if cur.is_empty() {
                word.to_string()
            } else {
                format!("{cur} {word}")
            };
            if self.text_width(&candidate, size) <= width || cur.is_empty() {
                cur = candidate;
            } else {
                lines.push(std::mem::replace(&mut cur, word.to_string()));
                if lines.len() == max_lines {
                    truncated = true;
                    break;
                }
            }
        }
        if !truncated && !cur.is_empty() {
            lines.push(cur);
        }
        if lines.len() > max_lines {
            lines.truncate(max_lines);
            truncated = true;
        }
        if truncated {
            if let Some(last) = lines.last_mut() {
                let ellipsis = self.text_width("…", size);
                *last = format!("{}…", fit(last, size, (width - ellipsis).max(0.0)));
            }
        }
        // A single word wider than the line: cut it to fit (at least one character).
        for l in &mut lines {
            let kept = fit(l, size, width);
            if kept.len() < l.len() {
                let first = l.chars().next().map_or(0, char::len_utf8);
                *l = l[..kept.len().max(first)].to_string();
            }
        }
        lines
    }

    pub fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.w, self.h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().expect("PNG header to memory");
            let data: Vec<u8> = self
                .px
                .iter()
                .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8))
                .collect();
            writer.write_image_data(&data).expect("PNG data to memory");
        }
        out
    }
}

/// Words that steer the scene: (words, hue, saturation, lightness, night).
const MOODS: &[(&[&str], f32, f32, f32, bool)] = &[
    (
        &["night", "space", "star", "stars", "galaxy", "moon", "dark"],
        240.0,
        0.45,
        0.18,
        true,
    ),
    (
        &["sunset", "sunrise", "fire", "autumn", "orange", "warm"],
        22.0,
        0.8,
        0.55,
        false,
    ),
    (
        &[
            "ocean", "sea", "water", "sky", "blue", "river", "lake", "rain",
        ],
        205.0,
        0.65,
        0.5,
        false,
    ),
    (
        &[
            "forest", "tree", "trees", "green", "grass", "leaf", "garden", "spring",
        ],
        120.0,
        0.5,
        0.42,
        false,
    ),
    (
        &[
            "desert", "sand", "sun", "gold", "golden", "yellow", "summer",
        ],
        45.0,
        0.8,
        0.6,
        false,
    ),
    (
        &["rose", "red", "love", "heart", "cherry"],
        352.0,
        0.7,
        0.5,
        false,
    ),
    (
        &["purple", "violet", "magic", "dream", "lavender"],
        278.0,
        0.55,
        0.5,
        false,
    ),
    (
        &["snow", "ice", "winter", "frost", "cold", "mountain"],
        195.0,
        0.35,
        0.78,
        false,
    ),
];

fn mood(prompt: &str, rng: &mut Rng) -> (f32, f32, f32, bool) {
    let lower = prompt.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for (keys, h, s, l, night) in MOODS {
        if words.iter().any(|w| keys.contains(w)) {
            return (*h + rng.range(-12.0, 12.0), *s, *l, *night);
        }
    }
    (
        rng.range(0.0, 360.0),
        rng.range(0.4, 0.75),
        rng.range(0.4, 0.6),
        false,
    )
}

/// Draws the picture of `prompt` at `w`×`h` with the prompt as its caption; PNG bytes.
pub(crate) fn render_prompt(prompt: &str, w: u32, h: u32) -> Vec<u8> {
    let mut c = compose(prompt, w, h);
    caption(&mut c, prompt, None);
    c.png()
}

/// A slide: the composition of its title, the title large and the text below it.
pub(crate) fn render_slide(title: &str, text: &str, w: u32, h: u32) -> Vec<u8> {
    let mut c = compose(title, w, h);
    caption(&mut c, text, Some(title));
    c.png()
}

fn compose(seed_text: &str, w: u32, h: u32) -> Canvas {
    let normalized: String = seed_text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut rng = Rng::new(fnv1a(&normalized.to_lowercase()));
    let (hue, sat, light, night) = mood(&normalized, &mut rng);
    // Palette: the mood's hue and a scheme (analogous, complementary or triadic) around it.
    let spread = [30.0, 180.0, 120.0][rng.below(3)];
    let palette: Vec<Rgb> = (0..5)
        .map(|i| {
            let h2 = hue + spread * (i as f32 - 2.0) / 2.0 + rng.range(-8.0, 8.0);
            hsl(
                h2,
                (sat + rng.range(-0.1, 0.1)).clamp(0.1, 1.0),
                (light + rng.range(-0.2, 0.2)).clamp(0.08, 0.92),
            )
        })
        .collect();
    let (fw, fh) = (w as f32, h as f32);
    let mut c = Canvas::new(w, h);
    let sky_top = hsl(
        hue + rng.range(-20.0, 20.0),
        sat,
        (light - 0.2).clamp(0.05, 0.9),
    );
    let sky_bottom = hsl(
        hue + spread / 2.0,
        sat * 0.8,
        (light + 0.2).clamp(0.1, 0.95),
    );
    c.gradient(
        sky_top,
        sky_bottom,
        std::f32::consts::FRAC_PI_2 + rng.range(-0.6, 0.6),
    );
    if night {
        for _ in 0..((w * h) / 900).clamp(10, 400) {
            let (x, y) = (rng.range(0.0, fw), rng.range(0.0, fh * 0.6));
            c.circle(
                x,
                y,
                rng.range(0.4, 1.4) * fw.min(fh) / 200.0 + 0.3,
                Rgb(1.0, 1.0, 0.95),
                rng.range(0.5, 1.0),
            );
        }
    }
    // A sun or moon.
    let r = fw.min(fh) * rng.range(0.08, 0.16);
    let glow = if night {
        Rgb(0.95, 0.95, 0.85)
    } else {
        hsl(hue + 40.0, 0.9, 0.75)
    };
    c.circle(
        rng.range(0.15, 0.85) * fw,
        rng.range(0.12, 0.4) * fh,
        r,
        glow,
        0.9,
    );
    // Shapes floating in the upper part.
    for _ in 0..rng.below(6) + 4 {
        let col = palette[rng.below(palette.len())];
        let alpha = rng.range(0.25, 0.6);
        let (x, y) = (rng.range(0.0, fw), rng.range(0.0, fh * 0.7));
        let s = fw.min(fh) * rng.range(0.05, 0.2);
        match rng.below(3) {
            0 => c.circle(x, y, s, col, alpha),
            1 => c.rect(x - s, y - s * 0.6, s * 2.0, s * 1.2, col, alpha),
            _ => {
                let a = rng.range(0.0, std::f32::consts::TAU);
                let p = |k: f32| (x + s * (a + k).cos(), y + s * (a + k).sin());
                c.triangle([p(0.0), p(2.1), p(4.2)], col, alpha)
            }
        }
    }
    // Layers of hills, darker towards the front.
    let layers = 2 + rng.below(2);
    for i in 0..layers {
        let t = i as f32 / layers as f32;
        let col = hsl(
            hue + spread * 0.5 * (1.0 - t),
            sat * 0.7,
            (light * (0.8 - 0.45 * t)).clamp(0.05, 0.9),
        );
        c.hills(
            fh * (0.55 + 0.12 * i as f32),
            fh * rng.range(0.04, 0.1),
            rng.range(0.8, 2.5),
            rng.range(0.0, 6.3),
            col,
            1.0,
        );
    }
    c
}

/// The text band at the bottom (and a title at the top, for slides).
fn caption(c: &mut Canvas, text: &str, title: Option<&str>) {
    let (fw, fh) = (c.w as f32, c.h as f32);
    let margin = (fw * 0.04).max(3.0);
    let size = (fh / 14.0).clamp(7.0, 44.0);
    if let Some(title) = title {
        let tsize = (fh / 9.0).clamp(9.0, 64.0);
        let lines = c.wrap(title, tsize, fw - 2.0 * margin, 2);
        let band = lines.len() as f32 * tsize * 1.2 + margin;
        c.rect(0.0, 0.0, fw, band, Rgb(0.0, 0.0, 0.0), 0.45);
        for (i, l) in lines.iter().enumerate() {
            c.text(
                l,
                margin,
                margin * 0.5 + i as f32 * tsize * 1.2,
                tsize,
                Rgb(1.0, 1.0, 1.0),
            );
        }
    }
    let max_lines = if title.is_some() { 6 } else { 3 };
    let lines = c.wrap(text, size, fw - 2.0 * margin, max_lines);
    if lines.is_empty() {
        return;
    }
    let band = lines.len() as f32 * size * 1.25 + margin;
    c.rect(0.0, fh - band, fw, band, Rgb(0.0, 0.0, 0.0), 0.55);
    for (i, l) in lines.iter().enumerate() {
        c.text(
            l,
            margin,
            fh - band + margin * 0.5 + i as f32 * size * 1.25,
            size,
            Rgb(1.0, 1.0, 1.0),
        );
    }
}

/// The size of a PNG (from its IHDR), or `None` if it is not one.
pub(crate) fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Some((be(16), be(20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_gives_the_same_picture_and_another_differs() {
        let a = render_prompt("a fox in the snow", 96, 64);
        assert_eq!(a, render_prompt("a fox in the snow", 96, 64));
        assert_ne!(a, render_prompt("a lighthouse at night", 96, 64));
        assert_eq!(png_size(&a), Some((96, 64)));
    }

    #[test]
    fn text_is_drawn_with_the_font() {
        let mut c = Canvas::new(100, 30);
        c.text("Hi", 2.0, 2.0, 20.0, Rgb(1.0, 1.0, 1.0));
        assert!(c.px.iter().any(|p| p[0] > 0.9), "some pixels are white");
        assert!(c.text_width("Hello", 20.0) > c.text_width("Hi", 20.0));
        let lines = c.wrap("one two three four five six seven", 20.0, 60.0, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…'));
    }
}
