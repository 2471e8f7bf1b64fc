//! End-to-end: a list with every kind of bad entry is packed, the good ones are read back intact.

use std::path::Path;

use ffem_data::imageops::encode_jpeg;
use ffem_data::records::inspect;
use ffem_data::{PackOptions, RecordSource, pack};
use image::RgbImage;

fn face_jpeg(seed: u8) -> Vec<u8> {
    let img = RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([x as u8 * 3 + seed, y as u8 * 4, seed])
    });
    encode_jpeg(&img, 90).unwrap()
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("images");
    std::fs::create_dir_all(root.join("p")).unwrap();
    for (name, seed) in [
        ("a.jpg", 1),
        ("b.jpg", 2),
        ("c.jpg", 3),
        ("d.jpg", 4),
        ("e.jpg", 5),
        ("f.jpg", 6),
    ] {
        std::fs::write(root.join("p").join(name), face_jpeg(seed)).unwrap();
    }
    std::fs::write(root.join("p/text.jpg"), b"just some text").unwrap();
    let full = face_jpeg(9);
    std::fs::write(root.join("p/trunc.jpg"), &full[..full.len() / 2]).unwrap();
    let json = dir.join("image_list.json");
    std::fs::write(
        &json,
        r#"{
  "p/a.jpg": {"label": 30, "x1": 10, "y1": 5, "x2": 50, "y2": 40, "landmarks": [20,15,40,15,30,25,22,33,38,33]},
  "p/b.jpg": {"label": 10, "x1": 0, "y1": 0, "x2": 64, "y2": 48},
  "p/c.jpg": {"label": 20, "x1": -5, "y1": -5, "x2": 30, "y2": 30},
  "p/missing.jpg": {"label": 1, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
  "p/text.jpg": {"label": 1, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
  "p/trunc.jpg": {"label": 1, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
  "p/d.jpg": {"label": 1, "x1": 30, "y1": 0, "x2": 10, "y2": 5},
  "p/e.jpg": {"label": 1, "x1": 100, "y1": 100, "x2": 200, "y2": 200},
  "p/f.jpg": {"label": -3, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
  "p/b.jpg": {"label": 99, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
  "p/a2.jpg": {"label": 2.5, "x1": 0, "y1": 0, "x2": 5, "y2": 5}
}"#,
    )
    .unwrap();
    json
}

#[test]
fn pack_skips_and_reports_every_bad_entry_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let json = fixture(dir.path());
    let out = dir.path().join("packed");
    let report = pack(&PackOptions::new(dir.path().join("images"), &json, &out)).unwrap();
    let m = &report.manifest;
    assert_eq!(report.entries_in_list, 11);
    assert_eq!(m.records, 3);
    assert_eq!(m.identities, 3);
    assert_eq!(m.label_map, vec![(10, 0), (20, 1), (30, 2)]);
    let reason = |key: &str| -> String {
        m.skipped
            .iter()
            .filter(|s| s.key == key)
            .map(|s| s.reason.clone())
            .collect::<Vec<_>>()
            .join("|")
    };
    assert_eq!(m.skipped.len(), 8, "{:?}", m.skipped);
    assert!(reason("p/missing.jpg").contains("image file not found"));
    assert!(reason("p/missing.jpg").contains("missing.jpg"));
    assert!(reason("p/text.jpg").contains("not an image"));
    assert!(reason("p/trunc.jpg").contains("truncated JPEG"));
    assert!(reason("p/d.jpg").contains("no area"));
    assert!(reason("p/e.jpg").contains("outside the 64x48 image"));
    assert!(reason("p/f.jpg").contains("negative"));
    assert!(reason("p/b.jpg").contains("duplicate"));
    assert!(reason("p/a2.jpg").contains("not a non-negative integer"));
    assert!(
        !dir.path()
            .join(".packed.tmp-".to_string() + &std::process::id().to_string())
            .exists()
    );

    let src = RecordSource::open(&out).unwrap();
    let recs: Vec<_> = src.records(false).map(Result::unwrap).collect();
    let paths: Vec<_> = recs.iter().map(|r| r.path.clone().unwrap()).collect();
    assert_eq!(paths, ["p/a.jpg", "p/b.jpg", "p/c.jpg"]);
    assert_eq!(recs.iter().map(|r| r.label).collect::<Vec<_>>(), [2, 0, 1]);
    assert_eq!(
        recs[0].jpeg,
        std::fs::read(dir.path().join("images/p/a.jpg")).unwrap()
    );
    assert_eq!(recs[0].face_box, [10, 5, 50, 40]);
    assert_eq!(recs[0].landmarks.unwrap()[0], 20.0);
    // The box is stored as the list gives it, even where it reaches past the image.
    assert_eq!(recs[2].face_box, [-5, -5, 30, 30]);

    let stats = inspect(&src, false).unwrap();
    assert_eq!(
        (
            stats.records,
            stats.identities,
            stats.with_landmarks,
            stats.pack_skipped.len()
        ),
        (3, 3, 1, 8)
    );

    // The output exists now: packing again without --overwrite refuses, with it succeeds.
    let err = pack(&PackOptions::new(dir.path().join("images"), &json, &out))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    let mut again = PackOptions::new(dir.path().join("images"), &json, &out);
    again.overwrite = true;
    again.shard_bytes = 1; // one record per shard
    assert_eq!(pack(&again).unwrap().manifest.shards.len(), 3);
}

#[test]
fn strict_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = fixture(dir.path());
    let out = dir.path().join("strict");
    let mut opts = PackOptions::new(dir.path().join("images"), &json, &out);
    opts.strict = true;
    let err = pack(&opts).unwrap_err().to_string();
    assert!(
        err.contains("--strict: 8 of 11 entries are bad, nothing was written"),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no staging left behind"
    );
}

#[test]
fn crop_mode_translates_box_and_landmarks() {
    let dir = tempfile::tempdir().unwrap();
    let json = fixture(dir.path());
    let out = dir.path().join("crops");
    let mut opts = PackOptions::new(dir.path().join("images"), &json, &out);
    opts.crop_margin = Some(0.25);
    pack(&opts).unwrap();
    let recs: Vec<_> = RecordSource::open(&out)
        .unwrap()
        .records(false)
        .map(Result::unwrap)
        .collect();
    // Box 10,5-50,40 (40x35) grown by 10 and 8.75 px: crop origin (0, 0) after clipping at the top-left,
    // so coordinates stay; the crop is 60 x 48 (clipped at 64 x 48).
    let img = ffem_data::imageops::decode_rgb(&recs[0].jpeg).unwrap();
    assert_eq!(img.dimensions(), (60, 48));
    assert_eq!(recs[0].face_box, [10, 5, 50, 40]);
    // Box -5,-5-30,30 (35 px, past the top-left corner) grown by 8.75 -> -13.75..38.75: the crop
    // holds the image part, 0..38.75 -> 39 x 39, and the box is kept as given relative to it.
    assert_eq!(
        ffem_data::imageops::decode_rgb(&recs[2].jpeg)
            .unwrap()
            .dimensions(),
        (39, 39)
    );
    assert_eq!(recs[2].face_box, [-5, -5, 30, 30]);
}

#[test]
fn empty_and_malformed_lists_fail_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bad.json");
    std::fs::write(&json, "{\"a.jpg\": {\"label\": 1 \"x1\": 2}}").unwrap();
    let err = pack(&PackOptions::new(dir.path(), &json, dir.path().join("o")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.json: line 1, column 23"), "{err}");
    std::fs::write(&json, "").unwrap();
    let err = pack(&PackOptions::new(dir.path(), &json, dir.path().join("o")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the file is empty"), "{err}");
}

#[test]
fn rec_pack_with_label_gaps_is_relabelled_onto_0_to_n() {
    use ffem_data::recordio::{IrHeader, RecWriter, pack_payload};
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
    let mut w = RecWriter::create(&rec, &idx).unwrap();
    // im2rec style (no header record): labels 7, 3, 7, 3, 12 -> packed 1, 0, 1, 0, 2.
    for (key, label) in [7.0f32, 3.0, 7.0, 3.0, 12.0].into_iter().enumerate() {
        let h = IrHeader {
            flag: 0,
            label,
            id: key as u64,
            id2: 0,
            labels: vec![],
        };
        w.write(key as u64, &pack_payload(&h, &face_jpeg(key as u8)))
            .unwrap();
    }
    w.finish().unwrap();
    let out = dir.path().join("packed");
    let mut opts = PackOptions::new("", "", &out);
    opts.shard_bytes = 1500; // several shards, so the rewrite crosses shard boundaries
    let report = ffem_data::pack_from_rec(&rec, &opts).unwrap();
    assert_eq!(report.manifest.label_map, vec![(3, 0), (7, 1), (12, 2)]);
    assert_eq!(report.manifest.identities, 3);
    let recs: Vec<_> = RecordSource::open(&out)
        .unwrap()
        .records(false)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recs.iter().map(|r| r.label).collect::<Vec<_>>(),
        vec![1, 0, 1, 0, 2]
    );
    assert_eq!(
        recs[4].jpeg,
        face_jpeg(4),
        "payload bytes survive the rewrite"
    );
    // Only the shards and the manifest are left: no staging or rewrite directories.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 3
            && names[0] == "manifest.json"
            && names[1..].iter().all(|n| n.ends_with(".tfrecord")),
        "{names:?}"
    );
    assert_eq!(report.manifest.shards.len(), names.len() - 1);
    assert!(!ffem_data::atomic::temp_path(&out).exists());
}
