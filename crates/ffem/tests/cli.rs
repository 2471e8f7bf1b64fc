//! The `ffem` command end to end: pack / inspect, eval on precomputed embeddings, info, and a
//! tiny trained model used through eval (.bin), embed, verify and search.

use std::path::Path;
use std::process::{Command, Output};

fn ffem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ffem"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("ffem runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn synthetic(dir: &Path, first: u64, ids: u64, per: u32) -> std::path::PathBuf {
    let d = dir.join(format!("synth{first}"));
    ffem_data::synth::generate(&d, first, ids, per, 48, 1).unwrap();
    d
}

#[test]
fn pack_inspect_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let s = synthetic(dir.path(), 0, 3, 4);
    // Break one entry: its file is gone.
    std::fs::remove_file(s.join("images/id00001/002.jpg")).unwrap();
    let out = dir.path().join("rec");
    let o = ffem(&[
        "pack",
        "--root_path",
        s.join("images").to_str().unwrap(),
        "--json_file",
        s.join("image_list.json").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("packed 11 of 12 entries (3 identities)"),
        "{text}"
    );
    assert!(
        text.contains("skipped 1 entries")
            && text.contains("id00001/002.jpg: image file not found"),
        "{text}"
    );
    let o = ffem(&["inspect", out.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.contains("records              11")
            && text.contains("identities           3")
            && text.contains("min 3, median 4, max 4"),
        "{text}"
    );
    let o = ffem(&[
        "pack",
        "--root",
        s.join("images").to_str().unwrap(),
        "--json",
        s.join("image_list.json").to_str().unwrap(),
        "--output",
        dir.path().join("strict").to_str().unwrap(),
        "--strict",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--strict: 1 of 12 entries are bad, nothing was written"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("strict").exists());
}

#[test]
fn eval_on_precomputed_embeddings_prints_the_protocol_numbers() {
    let dir = tempfile::tempdir().unwrap();
    // The hand-built case of ffem-eval's tests: nine folds with same 0.505 / diff 1.2345, one with a hard same 1.7.
    let mut rows = Vec::new();
    let mut issame = String::new();
    for f in 0..10 {
        for (d, same) in [(if f == 9 { 1.7 } else { 0.505 }, true), (1.2345f64, false)] {
            let c = 1.0 - d / 2.0;
            rows.extend([1.0f32, 0.0, c as f32, (1.0 - c * c).sqrt() as f32]);
            issame.push_str(if same { "1\n" } else { "false\n" });
        }
    }
    let e = dir.path().join("e.npy");
    ffem_eval::npy::write_f32(&e, &rows, 40, 2).unwrap();
    let i = dir.path().join("issame.txt");
    std::fs::write(&i, issame).unwrap();
    let o = ffem(&[
        "eval",
        "--embeddings",
        e.to_str().unwrap(),
        "--issame",
        i.to_str().unwrap(),
        "--json",
        "--roc",
        dir.path().join("roc.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!((v["accuracy"].as_f64().unwrap() - 0.95).abs() < 1e-9);
    assert!((v["std"].as_f64().unwrap() - 0.15).abs() < 1e-9);
    assert!((v["val"].as_f64().unwrap() - 0.9).abs() < 1e-9);
    assert_eq!(v["far"].as_f64().unwrap(), 0.0);
    assert!(
        (v["auc"].as_f64().unwrap() - 0.9).abs() < 1e-9
            && (v["eer"].as_f64().unwrap() - 0.1).abs() < 1e-9
    );
    assert_eq!(v["thresholds"].as_array().unwrap().len(), 10);
    assert!(dir.path().join("roc.png").metadata().unwrap().len() > 1000);
    // A bad label file names the line.
    std::fs::write(&i, "1\nmaybe\n").unwrap();
    let o = ffem(&[
        "eval",
        "--embeddings",
        e.to_str().unwrap(),
        "--issame",
        i.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("line 2: `maybe` is not 0/1 or true/false"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn info_reports_torchvision_parameter_counts() {
    let o = ffem(&["info", "--backbone", "mobilenet_v3_small", "--imagenet"]);
    assert!(stdout(&o).contains("parameters: 2542856"), "{}", stdout(&o));
}

#[test]
fn a_trained_model_through_eval_embed_verify_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let train = synthetic(dir.path(), 0, 6, 6);
    let rec = dir.path().join("rec");
    assert!(
        ffem(&[
            "pack",
            "--root",
            train.join("images").to_str().unwrap(),
            "--json",
            train.join("image_list.json").to_str().unwrap(),
            "--output",
            rec.to_str().unwrap()
        ])
        .status
        .success()
    );
    let run = dir.path().join("run");
    let o = ffem(&[
        "train",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        &format!("train_data=\"{}\"", rec.display()),
        "--set",
        "backbone=mobilenet_v3_small",
        "--set",
        "width=0.25",
        "--set",
        "image_size=32",
        "--set",
        "embedding_dim=16",
        "--set",
        "batch_size=6",
        "--set",
        "epochs=1",
        "--set",
        "checkpoint_every=0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 6 steps"), "{}", stdout(&o));
    let model = run.join("model");
    // Training again into the same run directory is refused with advice.
    let o = ffem(&[
        "train",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        &format!("train_data=\"{}\"", rec.display()),
    ]);
    assert!(
        stderr(&o).contains("already holds a run: pass --resume"),
        "{}",
        stderr(&o)
    );

    // An insightface-style .bin of held-out identities: 4 pairs.
    let test = synthetic(dir.path(), 100, 2, 4);
    let img =
        |id: u64, i: u32| std::fs::read(test.join(format!("images/id{id:05}/{i:03}.jpg"))).unwrap();
    let set = ffem_eval::bin_set::BinSet {
        images: vec![
            img(100, 0),
            img(100, 1),
            img(101, 0),
            img(101, 1),
            img(100, 2),
            img(101, 2),
            img(100, 3),
            img(101, 3),
        ],
        issame: vec![true, true, false, false],
    };
    let bin = dir.path().join("tiny.bin");
    ffem_eval::bin_set::write_bin(&bin, &set).unwrap();
    // Ten folds need ten pairs: repeat the four.
    let mut big = set.clone();
    for _ in 0..2 {
        big.images.extend(set.images.clone());
        big.issame.extend(set.issame.clone());
    }
    ffem_eval::bin_set::write_bin(&bin, &big).unwrap();
    let o = ffem(&[
        "eval",
        model.to_str().unwrap(),
        "--bin",
        bin.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["pairs"].as_u64(), Some(12));
    assert!(
        model.join("threshold.json").exists(),
        "eval saves the threshold with the model"
    );

    let o = ffem(&[
        "eval",
        model.to_str().unwrap(),
        "--identify",
        "--list",
        test.join("image_list.json").to_str().unwrap(),
        "--root",
        test.join("images").to_str().unwrap(),
        "--json",
        "--cmc",
        dir.path().join("cmc.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["queries"].as_u64(), v["gallery"].as_u64()),
        (Some(8), Some(7))
    );
    let cmc: Vec<f64> = v["cmc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        cmc.windows(2).all(|w| w[0] <= w[1]) && (cmc[6] - 1.0).abs() < 1e-12,
        "CMC rises to 1 by rank 7: {cmc:?}"
    );
    assert!(dir.path().join("cmc.png").exists());

    let npy = dir.path().join("emb.npy");
    let o = ffem(&[
        "embed",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("embedded 8 of 8 images (0 skipped)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("centre crop"),
        "no box: the warning says so: {}",
        stderr(&o)
    );
    let (data, rows, cols) = ffem_eval::npy::read_f32(&npy).unwrap();
    assert_eq!((rows, cols), (8, 16));
    for r in data.chunks_exact(16) {
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "rows are unit vectors");
    }
    let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
    assert!(
        csv.starts_with("row,path,label\n0,") && csv.contains(",id00101\n"),
        "{csv}"
    );

    // The ONNX Runtime engine: the same embeddings where the build has it, advice where it does not.
    let ort_npy = dir.path().join("emb_ort.npy");
    let o = ffem(&[
        "embed",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        ort_npy.to_str().unwrap(),
        "--engine",
        "onnxruntime",
    ]);
    if cfg!(feature = "onnxruntime") {
        assert!(o.status.success(), "{}", stderr(&o));
        let (ort_data, _, _) = ffem_eval::npy::read_f32(&ort_npy).unwrap();
        let diff = data
            .iter()
            .zip(&ort_data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-4,
            "burn and ONNX Runtime embeddings differ by {diff}"
        );
    } else {
        assert!(!o.status.success(), "{}", stdout(&o));
        assert!(
            stderr(&o).contains("--features onnxruntime"),
            "{}",
            stderr(&o)
        );
    }

    // With a list, boxes are used; a non-image in a folder is skipped and counted, --strict fails.
    std::fs::write(test.join("images/id00100/zz.jpg"), b"not an image").unwrap();
    let o = ffem(&[
        "embed",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("embedded 8 of 9 images (1 skipped)"),
        "{}",
        stdout(&o)
    );
    let o = ffem(&[
        "embed",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
        "--strict",
    ]);
    assert!(!o.status.success());
    std::fs::remove_file(test.join("images/id00100/zz.jpg")).unwrap();

    let a = test.join("images/id00100/000.jpg");
    let b = test.join("images/id00100/001.jpg");
    let o = ffem(&[
        "verify",
        model.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--list",
        test.join("image_list.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cosine similarity"), "{}", stdout(&o));
    let o = ffem(&[
        "verify",
        model.to_str().unwrap(),
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--threshold",
        "0.99",
    ]);
    assert!(
        stdout(&o).contains("cosine similarity 1.0000 (threshold 0.9900): same person"),
        "{}",
        stdout(&o)
    );

    let o = ffem(&[
        "search",
        model.to_str().unwrap(),
        "--gallery",
        npy.to_str().unwrap(),
        "--query",
        a.to_str().unwrap(),
        "-k",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    // The query itself is in the gallery: it comes first with similarity 1.
    assert!(
        lines[0].contains("1.0000") && lines[0].contains("id00100/000.jpg"),
        "{lines:?}"
    );
}

#[test]
fn pack_from_an_insightface_recordio_pack() {
    use ffem_data::recordio::{IrHeader, RecWriter, pack_payload};
    let dir = tempfile::tempdir().unwrap();
    let s = synthetic(dir.path(), 0, 2, 2);
    let img =
        |id: u64, i: u32| std::fs::read(s.join(format!("images/id{id:05}/{i:03}.jpg"))).unwrap();
    let h = |label: f32, labels: Vec<f32>| IrHeader {
        flag: labels.len() as u32,
        label,
        id: 0,
        id2: 0,
        labels,
    };
    let packdir = dir.path().join("ms1m");
    std::fs::create_dir_all(&packdir).unwrap();
    let mut w = RecWriter::create(&packdir.join("train.rec"), &packdir.join("train.idx")).unwrap();
    w.write(0, &pack_payload(&h(0.0, vec![6.0, 8.0]), b""))
        .unwrap();
    w.write(1, &pack_payload(&h(0.0, vec![]), &img(0, 0)))
        .unwrap();
    w.write(2, &pack_payload(&h(0.0, vec![]), &img(0, 1)))
        .unwrap();
    w.write(3, &pack_payload(&h(1.0, vec![]), &img(1, 0)))
        .unwrap();
    w.write(4, &pack_payload(&h(1.0, vec![]), &img(1, 1)))
        .unwrap();
    w.write(5, &pack_payload(&h(1.0, vec![]), b"garbage, not an image"))
        .unwrap();
    w.write(6, &pack_payload(&h(0.0, vec![1.0, 3.0]), b""))
        .unwrap();
    w.write(7, &pack_payload(&h(0.0, vec![3.0, 6.0]), b""))
        .unwrap();
    w.finish().unwrap();
    let out = dir.path().join("rec-out");
    let o = ffem(&[
        "pack",
        "--from-rec",
        packdir.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("packed 4 of 5 entries (2 identities)") && text.contains("rec:5:"),
        "{text}"
    );
    let recs: Vec<_> = ffem_data::RecordSource::open(&out)
        .unwrap()
        .records(false)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recs.iter().map(|r| r.label).collect::<Vec<_>>(),
        [0, 0, 1, 1]
    );
    assert_eq!(recs[2].jpeg, img(1, 0));
    let o = ffem(&[
        "pack",
        "--from-rec",
        packdir.to_str().unwrap(),
        "--output",
        dir.path().join("x").to_str().unwrap(),
        "--strict",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--strict: 1 of 5 records are bad"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn trains_directly_from_a_recordio_pack() {
    use ffem_data::recordio::{IrHeader, RecWriter, pack_payload};
    let dir = tempfile::tempdir().unwrap();
    let s = synthetic(dir.path(), 0, 3, 4);
    let packdir = dir.path().join("pack");
    std::fs::create_dir_all(&packdir).unwrap();
    let mut w = RecWriter::create(&packdir.join("train.rec"), &packdir.join("train.idx")).unwrap();
    let h = |label: f32, labels: Vec<f32>| IrHeader {
        flag: labels.len() as u32,
        label,
        id: 0,
        id2: 0,
        labels,
    };
    w.write(0, &pack_payload(&h(0.0, vec![13.0, 16.0]), b""))
        .unwrap();
    let mut key = 1;
    for id in 0..3u64 {
        for i in 0..4 {
            w.write(
                key,
                &pack_payload(
                    &h(id as f32, vec![]),
                    &std::fs::read(s.join(format!("images/id{id:05}/{i:03}.jpg"))).unwrap(),
                ),
            )
            .unwrap();
            key += 1;
        }
    }
    for id in 0..3u64 {
        w.write(
            13 + id,
            &pack_payload(&h(0.0, vec![(1 + 4 * id) as f32, (5 + 4 * id) as f32]), b""),
        )
        .unwrap();
    }
    w.finish().unwrap();
    let o = ffem(&["inspect", packdir.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("records              12")
            && stdout(&o).contains("identities           3"),
        "{}",
        stdout(&o)
    );
    let o = ffem(&[
        "train",
        "--run-dir",
        dir.path().join("run").to_str().unwrap(),
        "--set",
        &format!("train_data=\"{}\"", packdir.display()),
        "--set",
        "num_identity=3",
        "--set",
        "backbone=mobilenet_v3_small",
        "--set",
        "width=0.25",
        "--set",
        "image_size=32",
        "--set",
        "embedding_dim=16",
        "--set",
        "batch_size=4",
        "--set",
        "epochs=1",
        "--set",
        "checkpoint_every=0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 3 steps"), "{}", stdout(&o));
}

#[test]
fn detect_a_folder_then_pack_aligned_crops() {
    let Some(data) = ffem_data::shared_data_dir() else {
        return;
    };
    let missing = ffem(&[
        "detect",
        "--root",
        ".",
        "--output",
        "x.json",
        "--weights",
        "/nonexistent/mtcnn",
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("pnet.onnx")
            && stderr(&missing).contains("scripts/fetch-mtcnn.sh"),
        "{}",
        stderr(&missing)
    );
    let Some(_) = ffem_detect::test_weights_dir() else {
        return;
    };

    let lfw = data.join("lfw/lfw-deepfunneled");
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    for (person, files) in [
        (
            "Aaron_Peirsol",
            ["Aaron_Peirsol_0001.jpg", "Aaron_Peirsol_0002.jpg"],
        ),
        (
            "Abdullah_Gul",
            ["Abdullah_Gul_0001.jpg", "Abdullah_Gul_0002.jpg"],
        ),
    ] {
        std::fs::create_dir_all(photos.join(person)).unwrap();
        for f in files {
            std::fs::copy(lfw.join(person).join(f), photos.join(person).join(f)).unwrap();
        }
    }
    let blank = image::RgbImage::from_pixel(100, 100, image::Rgb([200, 200, 200]));
    std::fs::write(
        photos.join("Abdullah_Gul/blank.jpg"),
        ffem_data::imageops::encode_jpeg(&blank, 90).unwrap(),
    )
    .unwrap();

    let list = dir.path().join("photos.json");
    let reference = data.join("lfw/image_list.json");
    let o = ffem(&[
        "detect",
        "--root",
        photos.to_str().unwrap(),
        "--output",
        list.to_str().unwrap(),
        "--compare",
        reference.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("5 images -> 4 entries (2 identities)"),
        "{text}"
    );
    assert!(
        text.contains("skipped 1 images") && text.contains("Abdullah_Gul/blank.jpg: no face found"),
        "{text}"
    );
    assert!(
        text.contains("4 images compared") && text.contains("mean box IoU 0.9"),
        "{text}"
    );

    let out = dir.path().join("aligned");
    let o = ffem(&[
        "pack",
        "--root",
        photos.to_str().unwrap(),
        "--json",
        list.to_str().unwrap(),
        "--align",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("4 of 4 records aligned to the 112x112 ArcFace template"),
        "{}",
        stdout(&o)
    );
    let strict = ffem(&[
        "detect",
        "--root",
        photos.to_str().unwrap(),
        "--output",
        dir.path().join("s.json").to_str().unwrap(),
        "--strict",
    ]);
    assert!(
        !strict.status.success()
            && stderr(&strict).contains("1 image(s) skipped and --strict is set"),
        "{}",
        stderr(&strict)
    );
}
