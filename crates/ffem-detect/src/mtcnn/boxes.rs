//! The geometry between MTCNN's stages, as the reference implementation computes it: candidate
//! boxes, non-maximum suppression, squaring, box regression and the image pyramid's scales.

/// A candidate box between stages: corners, score, and the regression offsets P-Net gave it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cand {
    pub(super) b: [f64; 4],
    pub(super) score: f64,
    pub(super) reg: [f64; 4],
}

/// Non-maximum suppression: keeps the highest-scoring box, drops those overlapping it by more than
/// `threshold` (intersection over union, or over the smaller box with `min`), repeats. Areas use
/// the inclusive pixel convention `(x2 - x1 + 1) * (y2 - y1 + 1)` of the reference. Returns the
/// kept indices, best first.
pub(super) fn nms(boxes: &[Cand], threshold: f64, min: bool) -> Vec<usize> {
    let area = |c: &Cand| (c.b[2] - c.b[0] + 1.0) * (c.b[3] - c.b[1] + 1.0);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Ascending, the best at the end, as the reference's argsort.
    order.sort_by(|&a, &b| boxes[a].score.total_cmp(&boxes[b].score));
    let mut keep = Vec::new();
    while let Some(i) = order.pop() {
        keep.push(i);
        let bi = &boxes[i];
        order.retain(|&j| {
            let bj = &boxes[j];
            let w = (bi.b[2].min(bj.b[2]) - bi.b[0].max(bj.b[0]) + 1.0).max(0.0);
            let h = (bi.b[3].min(bj.b[3]) - bi.b[1].max(bj.b[1]) + 1.0).max(0.0);
            let inter = w * h;
            let o = if min {
                inter / area(bi).min(area(bj))
            } else {
                inter / (area(bi) + area(bj) - inter)
            };
            o <= threshold
        });
    }
    keep
}

/// Grows each box to a square around its centre (the side is the longer one).
pub(super) fn square(b: [f64; 4]) -> [f64; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let x1 = b[0] + w * 0.5 - side * 0.5;
    let y1 = b[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

/// Applies R-Net / O-Net box regression (offsets in units of the inclusive box size).
pub(super) fn regress(b: [f64; 4], reg: [f64; 4]) -> [f64; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: [f64; 4], score: f64) -> Cand {
        Cand {
            b,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        // Boxes 0 and 1 overlap: inclusive areas 11x11 = 121 each, intersection 11x10 = 110,
        // IoU = 110 / 132 = 0.833 > 0.7; box 2 is far away.
        let boxes = [
            cand([0.0, 0.0, 10.0, 10.0], 0.9),
            cand([1.0, 0.0, 11.0, 10.0], 0.95),
            cand([50.0, 50.0, 60.0, 60.0], 0.5),
        ];
        assert_eq!(nms(&boxes, 0.7, false), vec![1, 2]);
        // At 0.9 the IoU 0.833 survives.
        assert_eq!(nms(&boxes, 0.9, false), vec![1, 0, 2]);
        // A small box inside a big one: IoU is small, intersection over the smaller is 1.
        let nested = [
            cand([0.0, 0.0, 99.0, 99.0], 0.9),
            cand([10.0, 10.0, 19.0, 19.0], 0.8),
        ];
        assert_eq!(nms(&nested, 0.7, false), vec![0, 1]);
        assert_eq!(nms(&nested, 0.7, true), vec![0]);
    }

    #[test]
    fn square_and_regress_by_hand() {
        // 10 wide, 20 tall around centre (15, 20): square of side 20.
        assert_eq!(square([10.0, 10.0, 20.0, 30.0]), [5.0, 10.0, 25.0, 30.0]);
        // Inclusive size 11 x 21: offsets of 0.1 / -0.1 move by 1.1 and 2.1 px.
        let r = regress([0.0, 0.0, 10.0, 20.0], [0.1, 0.1, -0.1, -0.1]);
        let want = [1.1, 2.1, 8.9, 17.9];
        assert!(
            r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{r:?}"
        );
    }
}
