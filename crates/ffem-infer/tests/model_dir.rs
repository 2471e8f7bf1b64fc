//! Model directories that hold an imported external model: `import_onnx` writes one (checked,
//! probed, all at once), `open` runs it as it runs an ffem model, and what cannot be a face
//! model is refused at import with what is wrong. The graphs are the hand-made ones of
//! `common`, whose embeddings are known by hand; they run in tract here (the default build).

mod common;

use ffem_infer::model_dir::{
    EXTERNAL_FILE, Engine, GRAPH_FILE, ImportOptions, ModelKind, import_onnx, open, read_kind,
};
use ffem_infer::onnx_fold::fold_constant_dequantize;
use ffem_infer::onnx_import::{ChannelOrder, InputConvention, prepare_external};

/// Three prepared images (ffem's scaling) whose RGB pixel (channel ch, pixel p) of image k is
/// 10k + 40ch + 17p, and each image's channel means in 0..255.
fn images(side: usize) -> (Vec<f32>, Vec<[f64; 3]>) {
    let plane = side * side;
    let pixel = |k: usize, ch: usize, p: usize| (10 * k + 40 * ch + 17 * p) as f64;
    let mut prepared = Vec::new();
    let mut means = Vec::new();
    for k in 0..3 {
        for ch in 0..3 {
            for p in 0..plane {
                prepared.push((pixel(k, ch, p) / 127.5 - 1.0) as f32);
            }
        }
        means.push(std::array::from_fn(|ch| {
            (0..plane).map(|p| pixel(k, ch, p)).sum::<f64>() / plane as f64
        }));
    }
    (prepared, means)
}

fn import(bytes: &[u8], convention: InputConvention) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.onnx");
    std::fs::write(&file, bytes).unwrap();
    let out = dir.path().join("model");
    let opts = ImportOptions {
        convention: Some(convention),
        ..ImportOptions::default()
    };
    import_onnx(&file, &opts, &out).unwrap_or_else(|e| panic!("{e}"));
    (dir, out)
}

#[test]
fn an_imported_model_runs_with_its_recorded_convention() {
    for (batch, convention, order) in [
        (1, InputConvention::raw(ChannelOrder::Bgr), [2usize, 1, 0]),
        (1, InputConvention::default(), [0, 1, 2]),
        // A batch fixed at 2 in the file stays fixed: three images run padded.
        (2, InputConvention::default(), [0, 1, 2]),
    ] {
        let (_dir, model) = import(&common::tiny_face_model_with_batch(batch), convention);
        let ModelKind::External(ext) = read_kind(&model).unwrap() else {
            panic!("an imported directory reads as external");
        };
        assert_eq!(ext.embedding_dim, 4);
        assert_eq!(ext.image_size, common::SIDE as usize);
        assert_eq!(ext.convention(), convention);
        assert!(model.join(GRAPH_FILE).is_file() && model.join(EXTERNAL_FILE).is_file());
        for engine in [Engine::Auto, Engine::Tract] {
            let embedder = open(&model, engine, 1).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(embedder.dim(), 4);
            assert!(
                embedder.config().align,
                "external models take aligned faces"
            );
            let side = common::SIDE as usize;
            let (prepared, means) = images(side);
            let got = embedder.embed_prepared(&prepared, 3);
            for (k, m) in means.iter().enumerate() {
                let model_means: [f64; 3] = std::array::from_fn(|c| {
                    (m[order[c]] - convention.mean[c] as f64) / convention.std[c] as f64
                });
                common::assert_expected_embedding(
                    &got[k * 4..][..4],
                    model_means,
                    &format!("batch {batch} {engine:?} image {k}"),
                );
            }
        }
        let err = open(&model, Engine::Burn, 1)
            .err()
            .expect("burn runs no ONNX");
        assert!(err.to_string().contains("tract"), "{err}");
    }
}

#[test]
fn folding_replaces_the_block_dequantisation_by_its_weights() {
    let g = prepare_external(&common::tiny_face_model(), None, None).unwrap();
    let folded = fold_constant_dequantize(&g.bytes).unwrap();
    assert_eq!(folded.nodes, 1);
    assert_eq!(folded.dropped_initializers, 2, "w_q and w_scale");
    let text = String::from_utf8_lossy(&folded.bytes);
    assert!(!text.contains("DequantizeLinear") && !text.contains("w_scale"));
    // Folding twice changes nothing more.
    let again = fold_constant_dequantize(&folded.bytes).unwrap();
    assert_eq!(again.nodes, 0);
    assert_eq!(again.bytes, folded.bytes);
}

#[test]
fn what_is_not_a_face_model_is_refused_at_import_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "several_outputs",
            common::tiny_face_model_odd(&[Some(1), Some(3), Some(2), Some(2)], true),
            &["2 outputs", "`embedding`", "`pooled`", "--onnx-output"],
        ),
        (
            "rank3",
            common::tiny_face_model_odd(&[Some(3), Some(2), Some(2)], false),
            &["[3, 2, 2]", "N x 3 x H x W"],
        ),
        (
            "not_square",
            common::tiny_face_model_odd(&[Some(1), Some(3), Some(2), Some(4)], false),
            &["2 x 4", "square"],
        ),
        (
            "unsized",
            common::tiny_face_model_odd(&[None, Some(3), None, None], false),
            &["--image-size"],
        ),
        (
            "truncated",
            common::tiny_face_model()[..200].to_vec(),
            &["not an ONNX model"],
        ),
        ("empty", Vec::new(), &["no graph"]),
    ];
    for (name, bytes, words) in cases {
        let file = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&file, &bytes).unwrap();
        let out = dir.path().join(name);
        let err = import_onnx(&file, &ImportOptions::default(), &out)
            .expect_err(name)
            .to_string();
        assert!(err.contains(&format!("{name}.onnx")), "{name}: {err}");
        for w in words {
            assert!(err.contains(w), "{name}: `{w}` not in: {err}");
        }
        assert!(!out.exists(), "{name}: a refused import wrote {out:?}");
    }
    // The output names the embedding among several: then it imports.
    let file = dir.path().join("several_outputs.onnx");
    let opts = ImportOptions {
        output: Some("embedding".into()),
        ..ImportOptions::default()
    };
    let out = dir.path().join("picked");
    import_onnx(&file, &opts, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(open(&out, Engine::Tract, 1).unwrap().dim(), 4);
    // An import never overwrites a model.
    let err = import_onnx(&file, &opts, &out).expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn a_directory_without_a_model_says_what_a_model_directory_holds() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(dir.path(), Engine::Auto, 1).err().expect("empty");
    let msg = err.to_string();
    for w in ["model.json", "external.json", "ffem import", "ffem train"] {
        assert!(msg.contains(w), "{w}: {msg}");
    }
    // A graph swapped after import (another width) is caught at open.
    let (_d, model) = import(&common::tiny_face_model(), InputConvention::default());
    let text = std::fs::read_to_string(model.join(EXTERNAL_FILE)).unwrap();
    let edited = text.replace("\"embedding_dim\": 4", "\"embedding_dim\": 8");
    assert_ne!(edited, text);
    std::fs::write(model.join(EXTERNAL_FILE), edited).unwrap();
    let err = open(&model, Engine::Tract, 1).err().expect("width differs");
    assert!(err.to_string().contains("import it again"), "{err}");
}
