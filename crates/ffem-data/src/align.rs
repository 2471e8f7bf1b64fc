//! Five-point face alignment: the least-squares similarity transform that maps a face's landmarks
//! onto the standard 112x112 ArcFace template (insightface's `arcface_dst`).

/// The ArcFace template for a 112x112 crop: left eye, right eye, nose, mouth left, mouth right.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2-D similarity transform `p' = [a -b; b a] p + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Scale times cosine of the rotation.
    pub a: f32,
    /// Scale times sine of the rotation.
    pub b: f32,
    /// Translation x.
    pub tx: f32,
    /// Translation y.
    pub ty: f32,
}

impl Similarity {
    /// The least-squares similarity taking each `src[i]` to `dst[i]` (no reflection).
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
        let n = src.len().min(dst.len()) as f64;
        if n < 2.0 {
            return None;
        }
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts
                .iter()
                .fold((0.0, 0.0), |(x, y), p| (x + p[0] as f64, y + p[1] as f64));
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut num_a, mut num_b, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for (s, d) in src.iter().zip(dst) {
            let (x, y) = (s[0] as f64 - msx, s[1] as f64 - msy);
            let (u, v) = (d[0] as f64 - mdx, d[1] as f64 - mdy);
            num_a += x * u + y * v;
            num_b += x * v - y * u;
            den += x * x + y * y;
        }
        if den <= 1e-12 {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        let tx = mdx - (a * msx - b * msy);
        let ty = mdy - (b * msx + a * msy);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: tx as f32,
            ty: ty as f32,
        })
    }

    /// Applies the transform to a point.
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform.
    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, -self.b / det);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// As a row-major 2x3 matrix.
    pub fn matrix(&self) -> [f32; 6] {
        [self.a, -self.b, self.tx, self.b, self.a, self.ty]
    }
}

/// The transform from image pixels to an aligned `size` x `size` crop for the given landmarks.
pub fn alignment_for(landmarks: &[f32; 10], size: usize) -> Option<Similarity> {
    let scale = size as f32 / 112.0;
    let src: Vec<[f32; 2]> = landmarks.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    let dst: Vec<[f32; 2]> = ARCFACE_TEMPLATE
        .iter()
        .map(|p| [p[0] * scale, p[1] * scale])
        .collect();
    Similarity::estimate(&src, &dst)
}

/// Warps the face onto the `size` x `size` template frame by the similarity of its landmarks,
/// writing interleaved RGB f32 (0..255) into `out`; returns the similarity (image -> crop), or
/// `None` without touching `out` when the landmarks are degenerate.
pub fn warp_aligned(
    img: &image::RgbImage,
    landmarks: &[f32; 10],
    size: usize,
    out: &mut [f32],
) -> Option<Similarity> {
    let sim = alignment_for(landmarks, size)?;
    crate::imageops::warp_affine_inverse(img, sim.inverse().matrix(), size, out);
    Some(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity_exactly() {
        // Rotate 30 degrees, scale 1.7, shift (5, -3), by hand.
        let (s, th) = (1.7f32, 30f32.to_radians());
        let truth = Similarity {
            a: s * th.cos(),
            b: s * th.sin(),
            tx: 5.0,
            ty: -3.0,
        };
        let src = ARCFACE_TEMPLATE.to_vec();
        let dst: Vec<[f32; 2]> = src.iter().map(|&p| truth.apply(p)).collect();
        let est = Similarity::estimate(&src, &dst).unwrap();
        for (x, y) in [est.a, est.b, est.tx, est.ty]
            .iter()
            .zip([truth.a, truth.b, truth.tx, truth.ty])
        {
            assert!((x - y).abs() < 1e-3, "{est:?} vs {truth:?}");
        }
        let back = est.inverse().apply(est.apply([10.0, 20.0]));
        assert!((back[0] - 10.0).abs() < 1e-3 && (back[1] - 20.0).abs() < 1e-3);
    }

    #[test]
    fn least_squares_on_noisy_points_matches_normal_equations() {
        // Two points: the exact similarity through both has a closed form.
        let src = [[0.0, 0.0], [1.0, 0.0]];
        let dst = [[2.0, 2.0], [2.0, 4.0]]; // rotate 90 degrees, scale 2, shift (2, 2)
        let est = Similarity::estimate(&src, &dst).unwrap();
        assert!((est.a - 0.0).abs() < 1e-6 && (est.b - 2.0).abs() < 1e-6);
        assert!((est.tx - 2.0).abs() < 1e-6 && (est.ty - 2.0).abs() < 1e-6);
        assert!(Similarity::estimate(&[[1.0, 1.0], [1.0, 1.0]], &dst).is_none());
    }
}
