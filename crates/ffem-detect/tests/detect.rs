//! MTCNN on real faces against the independent reference boxes and landmarks, the folder tool's
//! handling of bad and face-less images, and clear errors for missing or wrong weights.

use std::path::{Path, PathBuf};

use ffem_data::image_list::ImageList;
use ffem_detect::{DetectError, DetectOptions, Mtcnn, compare_lists, detect_folder};
use image::RgbImage;

fn lfw() -> (PathBuf, ImageList) {
    let d = ffem_testdata::require_shared_data();
    let list = ImageList::load(&d.join("lfw/image_list.json")).unwrap();
    (d.join("lfw/lfw-deepfunneled"), list)
}

fn copy_weights(from: &Path, to: &Path) {
    for f in ffem_detect::mtcnn::NET_FILES {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn missing_weights_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = Mtcnn::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DetectError::Weights { .. }), "{msg}");
    assert!(
        msg.contains("pnet.onnx") && msg.contains("scripts/fetch-mtcnn.sh"),
        "{msg}"
    );
}

#[test]
fn garbage_weights_are_rejected_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pnet.onnx"), b"<html>404 not found</html>").unwrap();
    let msg = Mtcnn::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("pnet.onnx") && msg.contains("not a readable ONNX model"),
        "{msg}"
    );
}

#[test]
#[ignore = "needs the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn weights_of_the_wrong_network_are_rejected_by_shape() {
    let weights = ffem_testdata::require_mtcnn_weights();
    // O-Net in P-Net's place: three outputs (4, 10, 2 channels) where P-Net has two.
    let dir = tempfile::tempdir().unwrap();
    copy_weights(&weights, dir.path());
    std::fs::copy(weights.join("onet.onnx"), dir.path().join("pnet.onnx")).unwrap();
    let msg = Mtcnn::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("pnet.onnx")
            && msg.contains("is not the MTCNN P-Net")
            && msg.contains("channels"),
        "{msg}"
    );
    // P-Net in R-Net's place: its input is [N, W, H, 3], not [N, 24, 24, 3].
    copy_weights(&weights, dir.path());
    std::fs::copy(weights.join("pnet.onnx"), dir.path().join("rnet.onnx")).unwrap();
    let msg = Mtcnn::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("rnet.onnx") && msg.contains("[N, 24, 24, 3]"),
        "{msg}"
    );
}

#[test]
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn lfw_detections_match_the_reference_mtcnn() {
    let (weights, (root, reference)) = (ffem_testdata::require_mtcnn_weights(), lfw());
    let det = Mtcnn::load(&weights).unwrap();
    // Every 60th image: 221 images spread over the alphabet.
    let sample: Vec<_> = reference.entries.iter().step_by(60).cloned().collect();
    let found: Vec<_> = sample
        .iter()
        .map(|e| {
            let img = ffem_data::imageops::decode_rgb(&std::fs::read(root.join(&e.path)).unwrap())
                .unwrap();
            let (w, h) = img.dimensions();
            let mut faces = det.detect(&img).unwrap();
            assert!(!faces.is_empty(), "no face in {}", e.path);
            faces.sort_by(|a, b| {
                a.centre_distance2(w, h)
                    .total_cmp(&b.centre_distance2(w, h))
            });
            let f = faces[0];
            assert!(
                f.score > 0.7 && f.score <= 1.0,
                "{}: score {}",
                e.path,
                f.score
            );
            let b = ffem_data::FaceBox {
                x1: f.bbox[0],
                y1: f.bbox[1],
                x2: f.bbox[2],
                y2: f.bbox[3],
            };
            ffem_data::ImageEntry {
                path: e.path.clone(),
                label: e.label,
                face_box: Some(b),
                landmarks: Some(f.landmarks),
            }
        })
        .collect();
    let candidate = ImageList {
        entries: found,
        rejected: vec![],
    };
    let reference = ImageList {
        entries: sample,
        rejected: vec![],
    };
    let c = compare_lists(&candidate, &reference);
    eprintln!("{c}");
    assert_eq!(c.matched, reference.entries.len());
    assert!(c.mean_iou >= 0.9, "{c}");
    assert!(c.mean_landmark_px <= 2.0, "{c}");
    assert!(c.iou_above_half >= 0.99, "{c}");
}

/// Puts two LFW photos side by side on a grey canvas: one in the middle third, one on the left.
fn two_faces(a: &RgbImage, b: &RgbImage) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(750, 250, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, b, 0, 0);
    image::imageops::overlay(&mut canvas, a, 250, 0);
    canvas
}

#[test]
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn folder_tool_lists_every_skip_and_keeps_labels_from_folders() {
    let (weights, (root, reference)) = (ffem_testdata::require_mtcnn_weights(), lfw());
    let det = Mtcnn::load(&weights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("faces");
    let face = |i: usize| reference.entries[i].path.clone();
    for (person, file, from) in [
        ("bob", "1.jpg", face(0)),
        ("alice", "1.jpg", face(1)),
        ("alice", "2.jpg", face(2)),
    ] {
        std::fs::create_dir_all(src.join(person)).unwrap();
        std::fs::copy(root.join(&from), src.join(person).join(file)).unwrap();
    }
    // No face: a flat grey picture. Unreadable: half a JPEG. Loose: a face outside any folder.
    let grey = RgbImage::from_pixel(120, 120, image::Rgb([90, 90, 90]));
    std::fs::write(
        src.join("bob/wall.jpg"),
        ffem_data::imageops::encode_jpeg(&grey, 90).unwrap(),
    )
    .unwrap();
    let jpeg = std::fs::read(root.join(face(3))).unwrap();
    std::fs::write(src.join("bob/cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::copy(root.join(face(4)), src.join("loose.jpg")).unwrap();
    std::fs::write(src.join("bob/notes.txt"), "not an image").unwrap();

    let out = dir.path().join("list.json");
    let opts = DetectOptions {
        root: src.clone(),
        output: out.clone(),
        all_faces: false,
        strict: true,
        progress: false,
    };
    let err = detect_folder(&det, &opts).unwrap_err();
    assert!(matches!(err, DetectError::Strict { count: 3, .. }), "{err}");
    assert!(!out.exists(), "--strict must write nothing");

    let report = detect_folder(
        &det,
        &DetectOptions {
            strict: false,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        (
            report.images,
            report.entries,
            report.identities,
            report.other_files
        ),
        (6, 3, 2, 1)
    );
    let reasons: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|r| (r.key.clone(), r.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let reason_of = |k: &str| {
        reasons
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason_of("bob/wall.jpg"), "no face found");
    assert!(
        reason_of("bob/cut.jpg").contains("truncated JPEG"),
        "{reasons:?}"
    );
    assert!(
        reason_of("loose.jpg").contains("not inside an identity folder"),
        "{reasons:?}"
    );
    // The skip list is written beside the output for the user to act on.
    let listed: Vec<ffem_data::Rejected> =
        serde_json::from_slice(&std::fs::read(report.skipped_file.unwrap()).unwrap()).unwrap();
    assert_eq!(listed.len(), 3);

    let written = ImageList::load(&out).unwrap();
    let labels: Vec<(&str, u64)> = written
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.label))
        .collect();
    assert_eq!(
        labels,
        vec![("alice/1.jpg", 0), ("alice/2.jpg", 0), ("bob/1.jpg", 1)]
    );
    // Each written face agrees with the reference detection of the same photo.
    for (e, from) in written.entries.iter().zip([face(1), face(2), face(0)]) {
        let r = reference.entries.iter().find(|r| r.path == from).unwrap();
        let iou = e.face_box.unwrap().iou(&r.face_box.unwrap());
        assert!(iou > 0.75, "{}: IoU {iou} with the reference box", e.path);
        assert!(e.landmarks.is_some());
    }
}

#[test]
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn all_faces_gives_one_entry_per_face_central_first() {
    let (weights, (root, reference)) = (ffem_testdata::require_mtcnn_weights(), lfw());
    let det = Mtcnn::load(&weights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let load = |i: usize| {
        ffem_data::imageops::decode_rgb(
            &std::fs::read(root.join(&reference.entries[i].path)).unwrap(),
        )
        .unwrap()
    };
    std::fs::create_dir_all(dir.path().join("group")).unwrap();
    let canvas = two_faces(&load(0), &load(5));
    std::fs::write(
        dir.path().join("group/pair.jpg"),
        ffem_data::imageops::encode_jpeg(&canvas, 95).unwrap(),
    )
    .unwrap();

    let out = dir.path().join("all.json");
    let opts = DetectOptions {
        root: dir.path().to_path_buf(),
        output: out.clone(),
        all_faces: true,
        strict: true,
        progress: false,
    };
    let report = detect_folder(&det, &opts).unwrap();
    assert_eq!((report.images, report.entries), (1, 2));
    let all = ImageList::load(&out).unwrap();
    let keys: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(keys, vec!["group/pair.jpg#0", "group/pair.jpg#1"]);
    // #0 is the face pasted in the middle (x 250..500), #1 the one on the left.
    let centre_x = |i: usize| {
        let b = all.entries[i].face_box.unwrap();
        (b.x1 + b.x2) / 2.0
    };
    assert!(
        (250.0..500.0).contains(&centre_x(0)) && centre_x(1) < 250.0,
        "{:?}",
        all.entries
    );
    assert!(all.entries.iter().all(|e| e.file() == "group/pair.jpg"));

    // Without --all-faces the single entry is the central face, under the plain key.
    let one = dir.path().join("one.json");
    detect_folder(
        &det,
        &DetectOptions {
            all_faces: false,
            output: one.clone(),
            ..opts
        },
    )
    .unwrap();
    let one = ImageList::load(&one).unwrap();
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].path, "group/pair.jpg");
    assert_eq!(one.entries[0].face_box, all.entries[0].face_box);
}
