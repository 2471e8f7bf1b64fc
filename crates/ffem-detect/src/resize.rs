//! Image resizing with OpenCV's `INTER_AREA` semantics, which MTCNN's published pipeline uses for
//! the image pyramid and the R-Net / O-Net crops: an exact pixel-area average when shrinking, and
//! OpenCV's area-mode linear interpolation when enlarging. Matching it matters: MTCNN's scores move
//! with the resampling, and the detections are checked against a reference made that way.
//!
//! Images here are interleaved RGB `f32`, row-major, `width * height * 3` values.

/// One source sample's share of one destination sample along an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    dst: usize,
    src: usize,
    weight: f64,
}

/// The area-averaging taps along one axis (OpenCV `computeResizeAreaTab`): destination sample `d`
/// covers source interval `[d * scale, (d + 1) * scale)`, each source sample weighted by the part
/// of it inside, normalised by the interval's length.
fn area_taps(src_len: usize, dst_len: usize, scale: f64) -> Vec<Tap> {
    let mut taps = Vec::with_capacity(src_len * 2);
    for d in 0..dst_len {
        let fs1 = d as f64 * scale;
        let fs2 = fs1 + scale;
        let cell = scale.min(src_len as f64 - fs1);
        let mut s1 = fs1.ceil() as i64;
        let s2 = (fs2.floor() as i64).min(src_len as i64 - 1);
        s1 = s1.min(s2);
        // OpenCV stores the weights as f32.
        let w = |v: f64| (v as f32) as f64;
        if s1 as f64 - fs1 > 1e-3 {
            taps.push(Tap {
                dst: d,
                src: (s1 - 1) as usize,
                weight: w((s1 as f64 - fs1) / cell),
            });
        }
        for s in s1..s2 {
            taps.push(Tap {
                dst: d,
                src: s as usize,
                weight: w(1.0 / cell),
            });
        }
        if fs2 - s2 as f64 > 1e-3 {
            taps.push(Tap {
                dst: d,
                src: s2 as usize,
                weight: w((fs2 - s2 as f64).min(1.0).min(cell) / cell),
            });
        }
    }
    taps
}

/// OpenCV's linear taps in area mode (used by `INTER_AREA` when enlarging): for destination `d`,
/// source index `floor(d * scale)` and the fraction of the next one.
fn area_mode_linear(src_len: usize, dst_len: usize, scale: f64) -> Vec<(usize, usize, f64)> {
    let inv = 1.0 / scale;
    (0..dst_len)
        .map(|d| {
            let mut s = (d as f64 * scale).floor() as i64;
            let mut f = ((d + 1) as f64 - (s + 1) as f64 * inv) as f32;
            f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src_len as i64 - 1 {
                s = src_len as i64 - 1;
                f = 0.0;
            }
            let s = s as usize;
            (s, (s + 1).min(src_len - 1), f as f64)
        })
        .collect()
}

/// Resizes an interleaved RGB image to `dw` x `dh` as `cv2.resize(..., interpolation=INTER_AREA)`.
pub fn resize_area(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    assert_eq!(
        src.len(),
        sw * sh * 3,
        "image buffer does not match {sw}x{sh}x3"
    );
    assert!(
        sw > 0 && sh > 0 && dw > 0 && dh > 0,
        "empty image in resize"
    );
    if sw == dw && sh == dh {
        return src.to_vec();
    }
    // cv::resize derives the scales from the sizes it is given.
    let scale_x = 1.0 / (dw as f64 / sw as f64);
    let scale_y = 1.0 / (dh as f64 / sh as f64);
    let mut out = vec![0f32; dw * dh * 3];
    if scale_x >= 1.0 && scale_y >= 1.0 {
        let xt = area_taps(sw, dw, scale_x);
        let yt = area_taps(sh, dh, scale_y);
        // Horizontal pass once per source row; the y taps visit source rows in order, and a row
        // shared by two output rows comes twice in a row, so remembering the last one suffices.
        let mut row = vec![0f32; dw * 3];
        let mut last = usize::MAX;
        for t in &yt {
            if t.src != last {
                row.fill(0.0);
                let s = &src[t.src * sw * 3..(t.src + 1) * sw * 3];
                for x in &xt {
                    let w = x.weight as f32;
                    let (d, p) = (
                        &mut row[x.dst * 3..x.dst * 3 + 3],
                        &s[x.src * 3..x.src * 3 + 3],
                    );
                    d[0] += p[0] * w;
                    d[1] += p[1] * w;
                    d[2] += p[2] * w;
                }
                last = t.src;
            }
            let w = t.weight as f32;
            for (o, r) in out[t.dst * dw * 3..(t.dst + 1) * dw * 3]
                .iter_mut()
                .zip(&row)
            {
                *o += w * r;
            }
        }
    } else {
        let xt = area_mode_linear(sw, dw, scale_x);
        let yt = area_mode_linear(sh, dh, scale_y);
        for (dy, &(y0, y1, fy)) in yt.iter().enumerate() {
            let fy = fy as f32;
            for (dx, &(x0, x1, fx)) in xt.iter().enumerate() {
                let fx = fx as f32;
                for c in 0..3 {
                    let p = |x: usize, y: usize| src[(y * sw + x) * 3 + c];
                    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
                    let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
                    out[(dy * dw + dx) * 3 + c] = top * (1.0 - fy) + bottom * fy;
                }
            }
        }
    }
    out
}

/// Rounds to 8-bit values as OpenCV stores an 8-bit result (half to even, saturated), so that a
/// resize of 8-bit pixels given as f32 matches `cv2.resize` on a `uint8` image.
pub fn quantize_u8(values: &mut [f32]) {
    for v in values {
        *v = v.round_ties_even().clamp(0.0, 255.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(values: &[f32]) -> Vec<f32> {
        values.iter().flat_map(|&v| [v, v, v]).collect()
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        // 4x2 -> 2x1: each output is the mean of a 2x2 block, computed by hand.
        let img = gray(&[1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 6.0, 8.0]);
        let out = resize_area(&img, 4, 2, 2, 1);
        assert_eq!(
            out,
            gray(&[(1.0 + 3.0 + 2.0 + 4.0) / 4.0, (5.0 + 7.0 + 6.0 + 8.0) / 4.0])
        );
    }

    #[test]
    fn fractional_shrink_weights_partial_pixels() {
        // 3 -> 2 along x: output 0 covers [0, 1.5) = pixel 0 + half of pixel 1, over 1.5.
        let img = gray(&[3.0, 6.0, 9.0]);
        let out = resize_area(&img, 3, 1, 2, 1);
        let first = 3.0 * (1.0 / 1.5) + 6.0 * (0.5 / 1.5);
        let second = 6.0 * (0.5 / 1.5) + 9.0 * (1.0 / 1.5);
        assert!(
            (out[0] - first).abs() < 1e-5 && (out[3] - second).abs() < 1e-5,
            "{out:?}"
        );
        assert!((out[0] - 4.0).abs() < 1e-5 && (out[3] - 8.0).abs() < 1e-5);
    }

    #[test]
    fn area_mode_enlarging_repeats_pixels_and_blends_at_seams() {
        // 2 -> 4 along x, scale 0.5: OpenCV's area-mode taps give d=0: (0, f=0), d=1: s=0,
        // f = 2 - 1*2 = 0 -> 0, d=2: s=1 (last) -> f=0, d=3: s=1 -> f=0: pixel replication.
        let img = gray(&[10.0, 20.0]);
        let out = resize_area(&img, 2, 1, 4, 1);
        assert_eq!(out, gray(&[10.0, 10.0, 20.0, 20.0]));
        // 2 -> 3, scale 2/3: d=1: s=floor(0.667)=0, f = 2 - 1*1.5 = 0.5 -> blend of the two pixels.
        let out = resize_area(&img, 2, 1, 3, 1);
        assert_eq!(out, gray(&[10.0, 15.0, 20.0]));
    }

    #[test]
    fn constant_images_stay_constant_and_u8_rounds() {
        let img = vec![77f32; 37 * 23 * 3];
        for (w, h) in [(13, 9), (50, 40), (37, 10)] {
            let mut out = resize_area(&img, 37, 23, w, h);
            quantize_u8(&mut out);
            assert!(out.iter().all(|&v| v == 77.0), "{w}x{h}");
        }
        // Mean of 1 and 2 is 1.5: half to even gives 2; of 2 and 3 (2.5) also 2.
        let mut a = resize_area(&gray(&[1.0, 2.0]), 2, 1, 1, 1);
        let mut b = resize_area(&gray(&[2.0, 3.0]), 2, 1, 1, 1);
        quantize_u8(&mut a);
        quantize_u8(&mut b);
        assert_eq!((a, b), (gray(&[2.0]), gray(&[2.0])));
    }

    #[test]
    fn area_average_preserves_the_mean_of_a_random_image() {
        // Any area resize is a weighted average whose weights per output pixel sum to one, and
        // over the whole image each source pixel is used with total weight (dw*dh)/(sw*sh).
        let (sw, sh, dw, dh) = (53, 41, 17, 12);
        let img: Vec<f32> = (0..sw * sh * 3)
            .map(|i| ((i * 7919) % 251) as f32)
            .collect();
        let out = resize_area(&img, sw, sh, dw, dh);
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(
            (mean(&out) - mean(&img)).abs() < 1e-3,
            "{} vs {}",
            mean(&out),
            mean(&img)
        );
    }
}
