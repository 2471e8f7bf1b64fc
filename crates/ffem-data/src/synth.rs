//! Procedural face-like identities, the built-in default dataset: each identity is a fixed set
//! of geometry (face shape, eye spacing and size, nose, mouth, brows), colours (skin, eyes, hair,
//! lips) and texture (marks at fixed places); each image varies pose (rotation, shift, scale),
//! lighting (a directional gradient, overall brightness), background and pixel noise. Boxes and
//! five landmarks come out exactly, so the packer and pipeline see what a detector would give.

use std::path::Path;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::image_list::{FaceBox, ImageEntry, write_image_list};
use crate::imageops::encode_jpeg;

/// The fixed traits of one synthetic identity.
#[derive(Debug, Clone)]
pub struct Identity {
    face_w: f32,
    face_h: f32,
    skin: [f32; 3],
    hair: [f32; 3],
    iris: [f32; 3],
    lips: [f32; 3],
    eye_dx: f32,
    eye_y: f32,
    eye_r: f32,
    brow_tilt: f32,
    brow_thick: f32,
    nose_len: f32,
    nose_w: f32,
    mouth_y: f32,
    mouth_w: f32,
    hairline: f32,
    marks: Vec<(f32, f32, f32)>,
}

impl Identity {
    /// Draws an identity from its seed.
    pub fn new(seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_face);
        let mut col =
            |lo: f32, hi: f32| -> [f32; 3] { std::array::from_fn(|_| r.random_range(lo..hi)) };
        let skin = col(60.0, 240.0);
        let hair = col(10.0, 200.0);
        let iris = col(20.0, 200.0);
        let lips = col(80.0, 230.0);
        let marks = (0..r.random_range(1..5))
            .map(|_| {
                (
                    r.random_range(-0.6..0.6f32),
                    r.random_range(-0.5..0.7f32),
                    r.random_range(0.03..0.09f32),
                )
            })
            .collect();
        Identity {
            face_w: r.random_range(0.36..0.48),
            face_h: r.random_range(0.46..0.6),
            skin,
            hair,
            iris,
            lips,
            eye_dx: r.random_range(0.14..0.24),
            eye_y: r.random_range(-0.16..-0.04),
            eye_r: r.random_range(0.035..0.07),
            brow_tilt: r.random_range(-0.35..0.35),
            brow_thick: r.random_range(0.015..0.04),
            nose_len: r.random_range(0.08..0.2),
            nose_w: r.random_range(0.03..0.08),
            mouth_y: r.random_range(0.2..0.32),
            mouth_w: r.random_range(0.1..0.22),
            hairline: r.random_range(-0.5..-0.3),
            marks,
        }
    }

    /// Renders one image of `size` x `size`; returns it with the face box and landmarks.
    pub fn render(&self, size: u32, image_seed: u64) -> (RgbImage, FaceBox, [f32; 10]) {
        let mut r = ChaCha8Rng::seed_from_u64(image_seed);
        let s = size as f32;
        let angle: f32 = r.random_range(-0.25..0.25);
        let scale = s * r.random_range(0.85..1.1);
        let (cx, cy) = (
            s * (0.5 + r.random_range(-0.06..0.06f32)),
            s * (0.5 + r.random_range(-0.06..0.06f32)),
        );
        let light_dir: f32 = r.random_range(0.0..std::f32::consts::TAU);
        let light_amp: f32 = r.random_range(0.0..0.35);
        let gain: f32 = r.random_range(0.7..1.25);
        let bg: [f32; 3] = std::array::from_fn(|_| r.random_range(0.0..255.0));
        let noise: f32 = r.random_range(2.0..12.0);
        let (sa, ca) = angle.sin_cos();
        // Face coordinates (u, v) in units of `scale`, v down; pixel = centre + R * (u, v) * scale.
        let to_px = |u: f32, v: f32| -> [f32; 2] {
            [
                cx + (ca * u - sa * v) * scale,
                cy + (sa * u + ca * v) * scale,
            ]
        };
        let mut img = RgbImage::new(size, size);
        for y in 0..size {
            for x in 0..size {
                let (dx, dy) = ((x as f32 + 0.5 - cx) / scale, (y as f32 + 0.5 - cy) / scale);
                let (u, v) = (ca * dx + sa * dy, -sa * dx + ca * dy);
                let mut c = bg;
                let face = (u / self.face_w).powi(2) + (v / self.face_h).powi(2);
                if face < 1.0 {
                    c = self.skin;
                    if v < self.hairline + 0.08 * (u * 6.0).sin() {
                        c = self.hair;
                    }
                    for &(mu, mv, mr) in &self.marks {
                        let (mu, mv) = (mu * self.face_w, mv * self.face_h);
                        if (u - mu).powi(2) + (v - mv).powi(2) < (mr * 0.5).powi(2) {
                            c = [c[0] * 0.55, c[1] * 0.5, c[2] * 0.45];
                        }
                    }
                    for side in [-1.0f32, 1.0] {
                        let (ex, ey) = (side * self.eye_dx, self.eye_y);
                        let d2 = ((u - ex) / (self.eye_r * 1.6)).powi(2)
                            + ((v - ey) / self.eye_r).powi(2);
                        if d2 < 1.0 {
                            c = if (u - ex).powi(2) + (v - ey).powi(2) < (self.eye_r * 0.7).powi(2)
                            {
                                self.iris
                            } else {
                                [235.0, 235.0, 230.0]
                            };
                            if (u - ex).powi(2) + (v - ey).powi(2) < (self.eye_r * 0.3).powi(2) {
                                c = [15.0, 15.0, 15.0];
                            }
                        }
                        // Brow: a tilted bar above the eye.
                        let bu = u - ex;
                        let bv = v - (ey - self.eye_r * 2.0) - side * self.brow_tilt * bu;
                        if bu.abs() < self.eye_r * 1.8 && bv.abs() < self.brow_thick {
                            c = self.hair;
                        }
                    }
                    // Nose: a darker triangle from between the eyes down.
                    let t = (v - self.eye_y) / self.nose_len;
                    if (0.0..1.0).contains(&t) && u.abs() < self.nose_w * t {
                        c = [c[0] * 0.8, c[1] * 0.75, c[2] * 0.75];
                    }
                    // Mouth: an ellipse.
                    if (u / self.mouth_w).powi(2) + ((v - self.mouth_y) / 0.03).powi(2) < 1.0 {
                        c = self.lips;
                    }
                    let shade = 1.0 + light_amp * (u * light_dir.cos() + v * light_dir.sin()) * 2.0;
                    c = c.map(|ch| ch * shade);
                }
                let px =
                    c.map(|ch| (ch * gain + r.random_range(-noise..noise)).clamp(0.0, 255.0) as u8);
                img.put_pixel(x, y, Rgb(px));
            }
        }
        let corners = [
            to_px(-self.face_w, -self.face_h),
            to_px(self.face_w, -self.face_h),
            to_px(-self.face_w, self.face_h),
            to_px(self.face_w, self.face_h),
        ];
        let (x1, x2) = corners
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
        let (y1, y2) = corners
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[1]), b.max(p[1])));
        let face_box = FaceBox {
            x1: x1.max(0.0),
            y1: y1.max(0.0),
            x2: x2.min(s),
            y2: y2.min(s),
        };
        let pts = [
            to_px(-self.eye_dx, self.eye_y),
            to_px(self.eye_dx, self.eye_y),
            to_px(0.0, self.eye_y + self.nose_len),
            to_px(-self.mouth_w, self.mouth_y),
            to_px(self.mouth_w, self.mouth_y),
        ];
        let mut lm = [0f32; 10];
        for (i, p) in pts.iter().enumerate() {
            lm[2 * i] = p[0];
            lm[2 * i + 1] = p[1];
        }
        (img, face_box, lm)
    }
}

/// Writes `identities` x `per_identity` JPEGs under `dir/images/idNNNNN/` and `dir/image_list.json`;
/// identity k is drawn from `seed + k`, so disjoint ranges give disjoint identities.
pub fn generate(
    dir: &Path,
    first_identity: u64,
    identities: u64,
    per_identity: u32,
    size: u32,
    seed: u64,
) -> Result<Vec<ImageEntry>> {
    let root = dir.join("images");
    let jobs: Vec<(u64, u32)> = (first_identity..first_identity + identities)
        .flat_map(|id| (0..per_identity).map(move |i| (id, i)))
        .collect();
    let entries: Vec<Result<ImageEntry>> = jobs
        .par_iter()
        .map(|&(id, i)| {
            let ident = Identity::new(seed.wrapping_add(id));
            let (img, face_box, lm) = ident.render(
                size,
                seed.wrapping_mul(31).wrapping_add(id * 1000 + i as u64) ^ 0xabcdef,
            );
            let rel = format!("id{id:05}/{i:03}.jpg");
            let path = root.join(&rel);
            std::fs::create_dir_all(path.parent().expect("has parent"))
                .map_err(|e| DataError::io(&path, e))?;
            let jpeg = encode_jpeg(&img, 92).map_err(DataError::Invalid)?;
            std::fs::write(&path, jpeg).map_err(|e| DataError::io(&path, e))?;
            Ok(ImageEntry {
                path: rel,
                label: id,
                face_box: Some(face_box),
                landmarks: Some(lm),
            })
        })
        .collect();
    let entries = entries.into_iter().collect::<Result<Vec<_>>>()?;
    write_image_list(&dir.join("image_list.json"), &entries)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_image_and_identities_differ() {
        let a = Identity::new(1).render(64, 7);
        let b = Identity::new(1).render(64, 7);
        assert_eq!(a.0, b.0);
        let c = Identity::new(2).render(64, 7);
        assert_ne!(a.0, c.0);
        // The landmarks lie inside the box, left eye left of right eye.
        let (bx, lm) = (a.1, a.2);
        for p in lm.chunks_exact(2) {
            assert!(
                p[0] >= bx.x1 - 1.0
                    && p[0] <= bx.x2 + 1.0
                    && p[1] >= bx.y1 - 1.0
                    && p[1] <= bx.y2 + 1.0
            );
        }
        assert!(lm[0] < lm[2]);
    }
}
