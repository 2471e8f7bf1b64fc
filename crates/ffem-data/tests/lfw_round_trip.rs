//! Packs real LFW images and reads them back byte for byte; runs them through the pipeline.

use std::collections::HashMap;

use ffem_data::image_list::ImageList;
use ffem_data::{AugmentConfig, PackOptions, Pipeline, PipelineConfig, RecordSource, pack};

#[test]
#[ignore = "needs the face data (FFEM_DATA or ../shared/data): cargo test -- --include-ignored"]
fn lfw_subset_round_trips_through_records_and_pipeline() {
    let data = ffem_testdata::require_shared_data();
    let lfw = data.join("lfw");
    let list = ImageList::load(&lfw.join("image_list.json")).unwrap();
    assert_eq!(list.entries.len(), 13_233);
    assert!(list.rejected.is_empty());
    // Two reference boxes reach past the 250 x 250 frame: packed as given, not clipped.
    let past_the_edge: Vec<_> = list
        .entries
        .iter()
        .filter(|e| {
            let b = e.face_box.unwrap();
            b.x1 < 0.0 || b.y1 < 0.0 || b.x2 > 250.0 || b.y2 > 250.0
        })
        .cloned()
        .collect();
    assert_eq!(past_the_edge.len(), 2);
    // A subset keeps the test quick: the first 598 entries in file order and those two.
    let dir = tempfile::tempdir().unwrap();
    let mut subset: Vec<_> = list.entries[..598].to_vec();
    subset.extend(past_the_edge);
    let json = dir.path().join("subset.json");
    ffem_data::image_list::write_image_list(&json, &subset).unwrap();
    let out = dir.path().join("lfw");
    let mut opts = PackOptions::new(lfw.join("lfw-deepfunneled"), &json, &out);
    opts.shard_bytes = 2 << 20;
    let report = pack(&opts).unwrap();
    assert_eq!(report.manifest.records, 600);
    assert!(report.manifest.skipped.is_empty());
    assert!(report.manifest.shards.len() >= 3, "several shards of 2 MiB");

    let by_path: HashMap<_, _> = subset.iter().map(|e| (e.path.clone(), e)).collect();
    let label_map: HashMap<u64, u64> = report.manifest.label_map.iter().copied().collect();
    let src = RecordSource::open(&out).unwrap();
    let mut n = 0;
    for r in src.records(false) {
        let r = r.unwrap();
        let path = r.path.clone().unwrap();
        let e = by_path[&path];
        assert_eq!(
            r.jpeg,
            std::fs::read(lfw.join("lfw-deepfunneled").join(&path)).unwrap(),
            "{path}"
        );
        assert_eq!(r.label as u64, label_map[&e.label]);
        let b = e.face_box.unwrap();
        assert_eq!(
            r.face_box,
            [b.x1, b.y1, b.x2, b.y2].map(|v| v.round() as i64)
        );
        assert_eq!(r.landmarks, e.landmarks);
        n += 1;
    }
    assert_eq!(n, 600);

    let cfg = PipelineConfig {
        batch_size: 50,
        align: true,
        augment: AugmentConfig::seed_default(),
        num_classes: Some(report.manifest.identities),
        ..Default::default()
    };
    let batches: Vec<_> = Pipeline::new(src.clone(), cfg.clone())
        .unwrap()
        .epoch(0, 0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), 12);
    assert!(batches.iter().all(|b| b.images.len() == 50 * 3 * 112 * 112));

    // Without augmentation, each crop is the photo warped onto the ArcFace template by the
    // least-squares similarity of its five landmarks: compared with that warp written out here.
    let plain = PipelineConfig {
        augment: AugmentConfig::none(),
        ..cfg
    };
    let batch = Pipeline::new(src, plain)
        .unwrap()
        .epoch(0, 0)
        .next()
        .unwrap()
        .unwrap();
    for (img, path) in batch.images.chunks_exact(3 * 112 * 112).zip(&batch.paths) {
        let photo = ffem_data::imageops::decode_rgb(
            &std::fs::read(lfw.join("lfw-deepfunneled").join(path)).unwrap(),
        )
        .unwrap();
        let want = aligned_by_hand(&photo, &by_path[path].landmarks.unwrap());
        let mean_abs = img
            .iter()
            .zip(&want)
            .map(|(&a, b)| (a as f64 - b).abs())
            .sum::<f64>()
            / want.len() as f64;
        assert!(mean_abs < 0.01, "{path}: mean |crop - warp| = {mean_abs}");
    }
}

/// The ArcFace template (112 x 112, pixel-index coordinates) of insightface's alignment.
const TEMPLATE: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The 112 x 112 aligned crop, channel-planar and scaled to [-1, 1], computed in f64: the
/// closed-form least-squares similarity (no reflection) from the landmarks to the template,
/// inverted, each output pixel sampled bilinearly at its source point (black outside).
fn aligned_by_hand(photo: &image::RgbImage, landmarks: &[f32; 10]) -> Vec<f64> {
    let src: Vec<[f64; 2]> = landmarks
        .chunks_exact(2)
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    let mean = |pts: &[[f64; 2]]| {
        let n = pts.len() as f64;
        [
            pts.iter().map(|p| p[0]).sum::<f64>() / n,
            pts.iter().map(|p| p[1]).sum::<f64>() / n,
        ]
    };
    let (ms, md) = (mean(&src), mean(&TEMPLATE));
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(&TEMPLATE) {
        let (sx, sy, dx, dy) = (s[0] - ms[0], s[1] - ms[1], d[0] - md[0], d[1] - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        norm += sx * sx + sy * sy;
    }
    // template = [a -b; b a] photo + t
    let (a, b) = (dot / norm, cross / norm);
    let (tx, ty) = (md[0] - a * ms[0] + b * ms[1], md[1] - b * ms[0] - a * ms[1]);
    let det = a * a + b * b;
    let (w, h) = (photo.width() as f64, photo.height() as f64);
    let mut out = vec![0.0; 3 * 112 * 112];
    for oy in 0..112 {
        for ox in 0..112 {
            let (u, v) = (ox as f64 - tx, oy as f64 - ty);
            let (x, y) = ((a * u + b * v) / det, (-b * u + a * v) / det);
            for c in 0..3 {
                let value = if x < -0.5 || y < -0.5 || x > w - 0.5 || y > h - 0.5 {
                    0.0
                } else {
                    let (x, y) = (x.clamp(0.0, w - 1.0), y.clamp(0.0, h - 1.0));
                    let (x0, y0) = (x.floor(), y.floor());
                    let (x1, y1) = ((x0 + 1.0).min(w - 1.0), (y0 + 1.0).min(h - 1.0));
                    let p = |xx: f64, yy: f64| photo.get_pixel(xx as u32, yy as u32)[c] as f64;
                    let (fx, fy) = (x - x0, y - y0);
                    (p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx) * (1.0 - fy)
                        + (p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx) * fy
                };
                out[(c * 112 + oy) * 112 + ox] = value / 127.5 - 1.0;
            }
        }
    }
    out
}

#[test]
#[ignore = "needs the face data (FFEM_DATA or ../shared/data): cargo test -- --include-ignored"]
fn align_stores_template_aligned_crops_for_faces_with_landmarks() {
    use ffem_data::align::{ARCFACE_TEMPLATE, Similarity};
    let data = ffem_testdata::require_shared_data();
    let lfw = data.join("lfw");
    let root = lfw.join("lfw-deepfunneled");
    let list = ImageList::load(&lfw.join("image_list.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Every 1000th entry; the last one loses its landmarks and must be stored as the plain photo.
    let mut subset: Vec<_> = list.entries.iter().step_by(1000).cloned().collect();
    let n = subset.len();
    subset[n - 1].landmarks = None;
    let json = dir.path().join("subset.json");
    ffem_data::image_list::write_image_list(&json, &subset).unwrap();
    let out = dir.path().join("aligned");
    let mut opts = PackOptions::new(&root, &json, &out);
    opts.align = true;
    let report = pack(&opts).unwrap();
    assert_eq!(report.manifest.records, n as u64);
    assert_eq!(report.manifest.aligned, Some(n as u64 - 1));

    let by_path: HashMap<_, _> = subset.iter().map(|e| (e.path.clone(), e)).collect();
    for r in RecordSource::open(&out)
        .unwrap()
        .records(false)
        .map(Result::unwrap)
    {
        let e = by_path[r.path.as_ref().unwrap()];
        let original =
            ffem_data::imageops::decode_rgb(&std::fs::read(root.join(&e.path)).unwrap()).unwrap();
        let Some(lm) = e.landmarks else {
            assert_eq!(
                r.jpeg,
                std::fs::read(root.join(&e.path)).unwrap(),
                "no landmarks: the photo as it was"
            );
            continue;
        };
        let crop = ffem_data::imageops::decode_rgb(&r.jpeg).unwrap();
        assert_eq!(crop.dimensions(), (112, 112));
        assert_eq!(r.face_box, [0, 0, 112, 112]);
        // The stored landmarks sit on the template up to the least-squares residual of a similarity
        // fit to a real face (a few pixels), and the eyes come out level.
        let stored = r.landmarks.unwrap();
        let err: f32 = (0..5)
            .map(|i| {
                (stored[2 * i] - ARCFACE_TEMPLATE[i][0])
                    .hypot(stored[2 * i + 1] - ARCFACE_TEMPLATE[i][1])
            })
            .sum::<f32>()
            / 5.0;
        assert!(
            err < 6.0,
            "{}: landmarks {err:.2} px from the template",
            e.path
        );
        assert!(
            (stored[1] - stored[3]).abs() < 3.0,
            "{}: eyes at y {} and {}",
            e.path,
            stored[1],
            stored[3]
        );
        // Pixel check, independent of the packer's inverse: fit the map from the template back to
        // the photo directly and compare what the crop shows with the photo there.
        let pts: Vec<[f32; 2]> = lm.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        let back = Similarity::estimate(&ARCFACE_TEMPLATE, &pts).unwrap();
        let mut diff = 0f32;
        let mut count = 0;
        for v in (20..100).step_by(7) {
            for u in (20..100).step_by(7) {
                let [x, y] = back.apply([u as f32, v as f32]);
                let (xi, yi) = (x.round() as u32, y.round() as u32);
                if xi < original.width() && yi < original.height() {
                    let a = crop.get_pixel(u, v).0;
                    let b = original.get_pixel(xi, yi).0;
                    diff += (0..3)
                        .map(|c| (a[c] as f32 - b[c] as f32).abs())
                        .sum::<f32>()
                        / 3.0;
                    count += 1;
                }
            }
        }
        let mean = diff / count as f32;
        // Measured 2-11 grey levels (JPEG, nearest-pixel lookup); a wrong warp gives several times more.
        assert!(
            mean < 15.0,
            "{}: aligned crop differs from the photo by {mean:.1} grey levels on average",
            e.path
        );
    }
}
