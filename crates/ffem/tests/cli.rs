//! The `ffem` command end to end: pack / inspect, eval on precomputed embeddings, info, and a
//! tiny trained model used through eval (.bin, identification), embed, export, verify and search,
//! each checked against the same numbers computed through the library API.
//!
//! One file (over 600 lines) because its tests share the helpers that synthesise, pack and train
//! the tiny data and models they run the commands on.

use std::path::Path;
use std::process::{Command, Output};

use ffem_eval::embedding::{cosine, normalized_squared_distance};
use ffem_infer::face::FaceModel;
use ffem_infer::threshold::SavedThreshold;
use tract_onnx::prelude::*;

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
fn pack_of_two_lists_keeps_their_identities_apart() {
    let dir = tempfile::tempdir().unwrap();
    // Both lists number their identities from 0: 3 x 2 images and 2 x 3 images.
    let a = synthetic(dir.path(), 0, 3, 2);
    let b = dir.path().join("second");
    ffem_data::synth::generate(&b, 0, 2, 3, 48, 7).unwrap();
    let out = dir.path().join("merged");
    let o = ffem(&[
        "pack",
        "--json",
        a.join("image_list.json").to_str().unwrap(),
        "--root",
        a.join("images").to_str().unwrap(),
        "--json",
        b.join("image_list.json").to_str().unwrap(),
        "--root",
        b.join("images").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("packed 12 of 12 entries (5 identities)"),
        "{text}"
    );
    // The merged list beside the output: the second list's labels follow the first's.
    let merged =
        ffem_data::image_list::ImageList::load(&dir.path().join("merged.image_list.json")).unwrap();
    let label_of = |root: &Path, key: &str| {
        let path = root.join("images").join(key).display().to_string();
        merged
            .entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the merged list"))
            .label
    };
    assert_eq!(label_of(&a, "id00000/000.jpg"), 0);
    assert_eq!(label_of(&a, "id00002/001.jpg"), 2);
    assert_eq!(label_of(&b, "id00000/000.jpg"), 3);
    assert_eq!(label_of(&b, "id00001/002.jpg"), 4);
    // A list without its root is refused.
    let o = ffem(&[
        "pack",
        "--json",
        a.join("image_list.json").to_str().unwrap(),
        "--json",
        b.join("image_list.json").to_str().unwrap(),
        "--root",
        a.join("images").to_str().unwrap(),
        "--output",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2 --json but 1 --root"),
        "{}",
        stderr(&o)
    );
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
    let model = train_tiny_aligned_model(dir.path());
    let (run, rec) = (dir.path().join("run"), dir.path().join("rec"));
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
    // Every number below is recomputed from the library API (FaceModel) and ffem-eval: the CLI
    // must agree with them, not merely print something.
    let library = FaceModel::load(&model).unwrap();
    let whole_image = |bytes: &[u8]| {
        let (w, h) = image::load_from_memory(bytes)
            .unwrap()
            .into_rgb8()
            .dimensions();
        [0.0, 0.0, w as f32, h as f32]
    };
    let o = ffem(&[
        "eval",
        model.to_str().unwrap(),
        "--bin",
        bin.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let bin_emb: Vec<Vec<f32>> = big
        .images
        .iter()
        .map(|b| {
            library
                .embed_encoded(b, Some(whole_image(b)), None)
                .unwrap()
        })
        .collect();
    let dist: Vec<f32> = (0..big.issame.len())
        .map(|i| normalized_squared_distance(&bin_emb[2 * i], &bin_emb[2 * i + 1]))
        .collect();
    let expected = ffem_eval::evaluate(&dist, &big.issame, 10, None);
    assert!(
        (v["accuracy"].as_f64().unwrap() - expected.accuracy).abs() < 1e-9
            && (v["threshold_cosine"].as_f64().unwrap() - expected.threshold_cosine).abs() < 1e-4,
        "eval {v} vs the library's embeddings {expected:?}"
    );
    let saved = SavedThreshold::load(&model)
        .unwrap()
        .expect("eval saves the threshold");
    assert!((saved.threshold_cosine as f64 - expected.threshold_cosine).abs() < 1e-4);
    assert_eq!(
        FaceModel::load(&model).unwrap().threshold,
        Some(saved.threshold_cosine)
    );

    // Identification: Recall@1 by hand from the library's embeddings of the list (aligned faces).
    let list = ffem_data::ImageList::load(&test.join("image_list.json")).unwrap();
    let list_emb: Vec<Vec<f32>> = list
        .entries
        .iter()
        .map(|e| {
            let bytes = std::fs::read(test.join("images").join(&e.path)).unwrap();
            let b = e.face_box.map(|b| [b.x1, b.y1, b.x2, b.y2]);
            library.embed_encoded(&bytes, b, e.landmarks).unwrap()
        })
        .collect();
    let nearest_is_same = |q: usize| {
        let best = (0..list_emb.len())
            .filter(|&g| g != q)
            .max_by(|&x, &y| {
                cosine(&list_emb[q], &list_emb[x]).total_cmp(&cosine(&list_emb[q], &list_emb[y]))
            })
            .unwrap();
        list.entries[best].label == list.entries[q].label
    };
    let hits = (0..list_emb.len()).filter(|&q| nearest_is_same(q)).count();
    // `ffem embed` of the list and the library API give the same embedding for the same face: a
    // model trained on aligned faces is aligned by both (the library once ignored `align`).
    let list_npy = dir.path().join("list.npy");
    let o = ffem(&[
        "embed",
        "--no-detect",
        model.to_str().unwrap(),
        test.join("image_list.json").to_str().unwrap(),
        "--root",
        test.join("images").to_str().unwrap(),
        "--output",
        list_npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (data, rows, cols) = ffem_eval::npy::read_f32(&list_npy).unwrap();
    assert_eq!((rows, cols), (8, 16));
    for (row, lib) in data.chunks_exact(16).zip(&list_emb) {
        let diff = row
            .iter()
            .zip(lib)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "ffem embed and FaceModel differ by {diff}");
    }

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
    assert_eq!(v["queries"].as_u64(), Some(8));
    assert!(
        (v["recall_at_1"].as_f64().unwrap() - hits as f64 / 8.0).abs() < 1e-12,
        "{v} vs {hits} of 8 by hand"
    );
    assert!(dir.path().join("cmc.png").exists());

    // A folder (no boxes: centre crops, labelled by folder), and what ffem export makes of the
    // same network inputs in another runtime (tract).
    let npy = dir.path().join("emb.npy");
    let crops = dir.path().join("crops.npy");
    let o = ffem(&[
        "embed",
        "--no-detect",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
        "--no-flip",
        "--save-crops",
        crops.to_str().unwrap(),
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
    let (data, _, _) = ffem_eval::npy::read_f32(&npy).unwrap();
    let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
    assert!(
        csv.starts_with("row,path,label\n0,") && csv.contains(",id00101\n"),
        "{csv}"
    );
    let onnx = dir.path().join("model.onnx");
    let o = ffem(&[
        "export",
        model.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (crop_data, n, _) = ffem_eval::npy::read_f32(&crops).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_path(&onnx)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((n, 3, 32, 32), crop_data)
        .unwrap()
        .into();
    let out = plan.run(tvec!(input.into())).unwrap();
    let mut onnx_emb = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect::<Vec<_>>();
    ffem_eval::embedding::normalize_rows(&mut onnx_emb, 16);
    let diff = onnx_emb
        .iter()
        .zip(&data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        diff < 1e-4,
        "the exported ONNX model differs from ffem embed by {diff}"
    );

    // The ONNX Runtime engine: the same embeddings where the build has it, advice where it does not.
    let ort_npy = dir.path().join("emb_ort.npy");
    let o = ffem(&[
        "embed",
        "--no-detect",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        ort_npy.to_str().unwrap(),
        "--no-flip",
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

    // The exported file imported back is a model directory like any other: `ffem embed` gives
    // the embeddings of the model it came from (run in tract, or ONNX Runtime where built).
    let imported = dir.path().join("imported");
    let o = ffem(&[
        "import",
        onnx.to_str().unwrap(),
        "--output",
        imported.to_str().unwrap(),
        "--no-align",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("output `embedding` [N, 16]"),
        "{}",
        stdout(&o)
    );
    let imported_npy = dir.path().join("emb_imported.npy");
    let o = ffem(&[
        "embed",
        "--no-detect",
        imported.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        imported_npy.to_str().unwrap(),
        "--no-flip",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (imported_data, rows, _) = ffem_eval::npy::read_f32(&imported_npy).unwrap();
    assert_eq!(rows, 8);
    let diff = data
        .iter()
        .zip(&imported_data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff < 1e-4,
        "the imported export differs from its model by {diff}"
    );
    let o = ffem(&["info", imported.to_str().unwrap()]);
    assert!(
        o.status.success() && stdout(&o).contains("imported ONNX model"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // A non-image in a folder is skipped and counted; --strict fails and writes nothing.
    std::fs::write(test.join("images/id00100/zz.jpg"), b"not an image").unwrap();
    let o = ffem(&[
        "embed",
        "--no-detect",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("embedded 8 of 9 images (1 skipped)")
            && stderr(&o).contains("zz.jpg: not a decodable image"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let strict_npy = dir.path().join("strict.npy");
    let o = ffem(&[
        "embed",
        "--no-detect",
        model.to_str().unwrap(),
        test.join("images").to_str().unwrap(),
        "--output",
        strict_npy.to_str().unwrap(),
        "--strict",
    ]);
    assert!(!o.status.success() && !strict_npy.exists());
    std::fs::remove_file(test.join("images/id00100/zz.jpg")).unwrap();

    // verify: the similarity the library computes, and the decision flips at it.
    let a = test.join("images/id00100/000.jpg");
    let b = test.join("images/id00101/001.jpg");
    let sim = cosine(&list_emb[0], &list_emb[5]);
    assert_eq!(
        (list.entries[0].path.as_str(), list.entries[5].path.as_str()),
        ("id00100/000.jpg", "id00101/001.jpg")
    );
    let verify = |threshold: f32| {
        let o = ffem(&[
            "verify",
            model.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--list",
            test.join("image_list.json").to_str().unwrap(),
            "--threshold",
            &format!("{threshold}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let above = verify(sim + 0.01);
    let printed: f32 = above
        .strip_prefix("cosine similarity ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{above}"));
    assert!(
        (printed - sim).abs() < 1e-4 && above.contains("different people"),
        "{above} (library: {sim:.5})"
    );
    assert!(verify(sim - 0.01).contains("same person"));

    // search: a gallery folder whose names hold commas, searched from a folder and from its
    // embed output, with a query that is not in it; the ranking is the library's.
    let gallery = dir.path().join("gallery");
    let mut expected: Vec<(f32, String)> = Vec::new();
    for (i, e) in list.entries.iter().enumerate().skip(1) {
        let person = format!("Person, {}", e.label);
        let file = gallery.join(&person).join(format!("{i}.jpg"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let bytes = std::fs::read(test.join("images").join(&e.path)).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let g = library.embed_encoded(&bytes, None, None).unwrap();
        let q = library
            .embed_encoded(&std::fs::read(&a).unwrap(), None, None)
            .unwrap();
        expected.push((cosine(&q, &g), file.display().to_string()));
    }
    expected.sort_by(|x, y| y.0.total_cmp(&x.0));
    let gallery_npy = dir.path().join("gallery.npy");
    assert!(
        ffem(&[
            "embed",
            "--no-detect",
            model.to_str().unwrap(),
            gallery.to_str().unwrap(),
            "--output",
            gallery_npy.to_str().unwrap(),
        ])
        .status
        .success()
    );
    for source in [&gallery_npy, &gallery] {
        let o = ffem(&[
            "search",
            "--no-detect",
            model.to_str().unwrap(),
            "--gallery",
            source.to_str().unwrap(),
            "--query",
            a.to_str().unwrap(),
            "-k",
            "3",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (rank, (line, (score, name))) in lines.iter().zip(&expected).enumerate() {
            let fields: Vec<&str> = line.trim_start().splitn(3, "  ").collect();
            assert_eq!(fields[0], (rank + 1).to_string(), "{line}");
            let printed: f32 = fields[1].parse().unwrap();
            assert!(
                (printed - score).abs() < 1e-4 && fields[2] == name,
                "gallery {}: `{line}`, expected {score:.5} {name}",
                source.display()
            );
        }
    }
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
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn detect_a_folder_then_pack_aligned_crops() {
    let data = ffem_testdata::require_shared_data();
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
    ffem_testdata::require_mtcnn_weights();

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

/// Packs synthetic identities and trains a 32 px, 16-d model on aligned faces; returns its
/// model directory.
fn train_tiny_aligned_model(dir: &Path) -> std::path::PathBuf {
    let train = synthetic(dir, 0, 6, 6);
    let rec = dir.join("rec");
    let o = ffem(&[
        "pack",
        "--root",
        train.join("images").to_str().unwrap(),
        "--json",
        train.join("image_list.json").to_str().unwrap(),
        "--output",
        rec.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.join("run");
    let sets = [
        format!("train_data=\"{}\"", rec.display()),
        "backbone=mobilenet_v3_small".into(),
        "width=0.25".into(),
        "image_size=32".into(),
        "embedding_dim=16".into(),
        "batch_size=6".into(),
        // L2-softmax with Adam separates the 6 identities within these 96 steps (ArcFace from
        // scratch leaves every embedding nearly parallel this early). A model this small, trained
        // on synthetic faces and used on real ones, is sensitive to rounding: changing the order
        // of a sum in the optimiser or in squeeze-excite's gradient moves the similarities below
        // by up to 0.2, so the thresholds there have margins and the model trains 16 epochs
        // (8 left the two faces of the group photo nearly parallel).
        "epochs=16".into(),
        "loss=l2softmax".into(),
        "optimizer=adam".into(),
        "lr=0.01".into(),
        "checkpoint_every=0".into(),
        "align=true".into(),
    ];
    let mut args = vec!["train", "--run-dir", run.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let o = ffem(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 96 steps"), "{}", stdout(&o));
    run.join("model")
}

/// The first number after `cosine similarity ` in `verify`'s output.
fn printed_similarity(text: &str) -> f32 {
    text.strip_prefix("cosine similarity ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no similarity in `{text}`"))
}

#[test]
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn verify_finds_and_aligns_the_face_in_raw_portraits() {
    let data = ffem_testdata::require_shared_data();
    let weights = ffem_testdata::require_mtcnn_weights();
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny_aligned_model(dir.path());
    let lfw = data.join("lfw");
    let list = ffem_data::ImageList::load(&lfw.join("image_list.json")).unwrap();
    let photo = |key: &str| std::fs::read(lfw.join("lfw-deepfunneled").join(key)).unwrap();
    // Portraits as users have them: 1382 x 1868, the face a small part of the frame; one saved
    // as JPEG, the other as WebP under a .jpg name.
    let portrait = |key: &str, x: i64, y: i64| {
        let face = ffem_data::imageops::decode_rgb(&photo(key)).unwrap();
        let big = image::imageops::resize(&face, 500, 500, image::imageops::FilterType::Triangle);
        let mut frame = image::RgbImage::from_pixel(1382, 1868, image::Rgb([200, 195, 185]));
        image::imageops::overlay(&mut frame, &big, x, y);
        frame
    };
    let (key_a, key_b) = (
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
    );
    let a = dir.path().join("a.jpg");
    let b = dir.path().join("b.jpg");
    portrait(key_a, 300, 900).save(&a).unwrap();
    portrait(key_b, 700, 300)
        .save_with_format(&b, image::ImageFormat::WebP)
        .unwrap();

    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            model.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--threshold",
            "0.5",
        ];
        args.extend(extra);
        let o = ffem(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        printed_similarity(&stdout(&o))
    };
    let detected = verify(&[]);
    let centre = verify(&["--no-detect"]);

    // The library with the detector gives what the command printed.
    let library = FaceModel::load(&model)
        .unwrap()
        .with_detector(&weights)
        .unwrap();
    let ea = library
        .embed_encoded(&std::fs::read(&a).unwrap(), None, None)
        .unwrap();
    let eb = library
        .embed_encoded(&std::fs::read(&b).unwrap(), None, None)
        .unwrap();
    assert!((cosine(&ea, &eb) - detected).abs() < 1e-4);

    // The aligned result: each portrait embeds like its original LFW photo aligned by the
    // reference landmarks (an independent MTCNN's), and unlike the portrait's centre crop.
    let reference = |key: &str| {
        let e = list.entries.iter().find(|e| e.path == key).unwrap();
        let b = e.face_box.unwrap();
        library
            .embed_encoded(&photo(key), Some([b.x1, b.y1, b.x2, b.y2]), e.landmarks)
            .unwrap()
    };
    let plain = FaceModel::load(&model).unwrap();
    let centre_a = plain
        .embed_encoded(&std::fs::read(&a).unwrap(), None, None)
        .unwrap();
    let (aligned_vs_reference, centre_vs_reference) = (
        cosine(&ea, &reference(key_a)),
        cosine(&centre_a, &reference(key_a)),
    );
    assert!(
        aligned_vs_reference > 0.9 && cosine(&eb, &reference(key_b)) > 0.9,
        "detected and aligned vs reference-aligned: {aligned_vs_reference}"
    );
    assert!(
        centre_vs_reference < aligned_vs_reference - 0.1,
        "the centre crop should be far from the face: {centre_vs_reference} vs {aligned_vs_reference}"
    );
    assert!(
        (cosine(
            &centre_a,
            &plain
                .embed_encoded(&std::fs::read(&b).unwrap(), None, None)
                .unwrap()
        ) - centre)
            .abs()
            < 1e-4
    );

    // A group photo: `--all-faces` gives a row per face, the largest first, and that row is what
    // the library (which takes the largest face) embeds.
    let group = dir.path().join("group.jpg");
    {
        let mut frame = portrait(key_a, 100, 600);
        let small =
            ffem_data::imageops::decode_rgb(&photo("Abdullah_Gul/Abdullah_Gul_0001.jpg")).unwrap();
        let small =
            image::imageops::resize(&small, 300, 300, image::imageops::FilterType::Triangle);
        image::imageops::overlay(&mut frame, &small, 900, 200);
        frame.save(&group).unwrap();
    }
    let group_npy = dir.path().join("group.npy");
    let o = ffem(&[
        "embed",
        model.to_str().unwrap(),
        group.to_str().unwrap(),
        "--all-faces",
        "--output",
        group_npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("embedded 2 faces of 1 images (0 skipped)"),
        "{}",
        stdout(&o)
    );
    let index = std::fs::read_to_string(group_npy.with_extension("csv")).unwrap();
    let g = group.display().to_string();
    assert_eq!(index, format!("row,path,label\n0,{g}#0,\n1,{g}#1,\n"));
    let (rows, n, d) = ffem_eval::npy::read_f32(&group_npy).unwrap();
    assert_eq!((n, d), (2, 16));
    let largest = library
        .embed_encoded(&std::fs::read(&group).unwrap(), None, None)
        .unwrap();
    assert!(cosine(&rows[..16], &largest) > 0.9999);
    assert!(cosine(&rows[16..], &largest) < 0.99);

    // A photo without a face is an error naming it; missing weights name the fetch script.
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([120, 120, 120]))
        .save(&blank)
        .unwrap();
    let o = ffem(&[
        "verify",
        model.to_str().unwrap(),
        a.to_str().unwrap(),
        blank.to_str().unwrap(),
        "--threshold",
        "0.5",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("blank.png: no face found"),
        "{}",
        stderr(&o)
    );
    let o = ffem(&[
        "verify",
        model.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--threshold",
        "0.5",
        "--detector-weights",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("scripts/fetch-mtcnn.sh"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn clean_flags_injected_label_noise() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny_aligned_model(dir.path());
    let held_out = synthetic(dir.path(), 100, 6, 6);
    let cleaned = dir.path().join("cleaned.json");
    let o = ffem(&[
        "clean",
        model.to_str().unwrap(),
        "--list",
        held_out.join("image_list.json").to_str().unwrap(),
        "--root",
        held_out.join("images").to_str().unwrap(),
        "--output",
        cleaned.to_str().unwrap(),
        "--inject-label-noise",
        "0.2",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // 36 images, 7 labels flipped; the printed counts agree with the files written.
    let flagged: usize = text.split_whitespace().next().unwrap().parse().unwrap();
    let kept = ffem_data::ImageList::load(&cleaned).unwrap().entries.len();
    assert_eq!(kept, 36 - flagged, "{text}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cleaned.with_extension("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["suspects"].as_array().unwrap().len(), flagged);
    let recall: f64 = text
        .split("recall ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(text.contains("7 labels flipped") && recall >= 0.5, "{text}");
}

#[test]
fn onnx_channel_orders_are_rgb_or_bgr_and_a_typo_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.onnx");
    let out = dir.path().join("out");
    let import_with = |channels: &str| {
        let o = ffem(&[
            "import",
            missing.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--onnx-channels",
            channels,
        ]);
        assert!(!o.status.success());
        stderr(&o)
    };
    let err = import_with("grb");
    assert!(
        err.contains("grb") && err.contains("rgb") && err.contains("bgr"),
        "{err}"
    );
    // A valid order passes parsing: the failure is then about the missing file, named.
    let err = import_with("bgr");
    assert!(!err.contains("invalid value"), "{err}");
    assert!(err.contains("absent.onnx"), "{err}");
    assert!(!out.exists(), "a failed import writes nothing");
}
