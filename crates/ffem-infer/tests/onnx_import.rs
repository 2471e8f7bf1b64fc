//! External ONNX models: the graph rewrite that makes old converted models batchable, and the
//! input conventions, against hand-made graphs and hand-computed pixels. (Running the rewritten
//! graph is in `ort_engine.rs`, which needs the ONNX Runtime library.)

mod common;

use ffem_infer::onnx_import::{ChannelOrder, InputConvention, OnnxImportError, prepare_external};

#[test]
fn rewrite_drops_unused_inputs_keeps_constants_and_relaxes_the_batch() {
    let model = common::tiny_face_model();
    let g = prepare_external(&model, None, None).unwrap();
    assert_eq!(g.input, "image");
    assert_eq!(g.output, "embedding");
    assert_eq!(g.dropped_unused_inputs, vec!["unused_weights".to_string()]);
    assert_eq!(
        g.constant_inputs, 1,
        "`gain` is an initializer listed as an input"
    );
    assert!(g.batch_relaxed);
    assert_eq!(g.image_size(), Some(2));
    assert_eq!(g.embedding_dim(), Some(4));
    let text = String::from_utf8_lossy(&g.bytes);
    assert!(!text.contains("unused_weights"));

    // The rewritten graph lists one input, whose batch is symbolic, and nothing left to drop.
    let again = prepare_external(&g.bytes, None, None).unwrap();
    assert_eq!(again.input, "image");
    assert_eq!(again.input_dims, vec![None, Some(3), Some(2), Some(2)]);
    assert_eq!(again.output_dims, vec![None, Some(4)]);
    assert!(again.dropped_unused_inputs.is_empty());
    assert_eq!(again.constant_inputs, 0);
    assert!(!again.batch_relaxed);
    // The shape hint that pinned `flat` to batch 1 is gone; every node and initializer stays.
    assert_eq!(again.bytes, g.bytes);
    assert!(g.bytes.len() < model.len());
    for name in [
        "GlobalAveragePool",
        "DequantizeLinear",
        "w_scale",
        "block_size",
    ] {
        assert!(text.contains(name), "{name} lost in the rewrite");
    }
}

#[test]
fn wrong_names_and_garbage_are_explained() {
    let model = common::tiny_face_model();
    let err = prepare_external(&model, Some("input.1"), None).unwrap_err();
    assert!(matches!(err, OnnxImportError::Inputs(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("`input.1`") && msg.contains("`image`"),
        "{msg}"
    );
    let msg = prepare_external(&model, None, Some("fc1"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`fc1`") && msg.contains("`embedding`"),
        "{msg}"
    );
    let err = prepare_external(b"\x0a\xff\xff\xff\x0f", None, None).unwrap_err();
    assert!(matches!(err, OnnxImportError::Malformed(_)), "{err}");
    let err = prepare_external(b"", None, None).unwrap_err();
    assert!(err.to_string().contains("no graph"), "{err}");
}

#[test]
fn conventions_map_prepared_crops_to_the_models_pixels() {
    // One pixel per channel: R = 0, G = 127.5, B = 255, as ffem prepares them: v / 127.5 - 1.
    let prepared = [-1.0f32, 0.0, 1.0];
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    let insightface = InputConvention::default().convert(&prepared, 1);
    assert!(close(&insightface, &[-1.0, 0.0, 1.0]), "{insightface:?}");
    let sface = InputConvention::raw(ChannelOrder::Bgr).convert(&prepared, 1);
    assert!(close(&sface, &[255.0, 127.5, 0.0]), "{sface:?}");
    let custom = InputConvention {
        channels: ChannelOrder::Bgr,
        mean: [1.0, 2.0, 3.0],
        std: [2.0, 4.0, 8.0],
    }
    .convert(&prepared, 1);
    let want = [(255.0 - 1.0) / 2.0, (127.5 - 2.0) / 4.0, (0.0 - 3.0) / 8.0];
    assert!(close(&custom, &want), "{custom:?} vs {want:?}");
}

#[test]
fn conventions_from_option_values_spread_one_value_and_name_the_bad_key() {
    let raw =
        InputConvention::from_values(ChannelOrder::Bgr, &[0.0], &[1.0], "mean", "std").unwrap();
    assert_eq!(raw, InputConvention::raw(ChannelOrder::Bgr));
    let three = InputConvention::from_values(
        ChannelOrder::Rgb,
        &[1.0, 2.0, 3.0],
        &[4.0, 5.0, 6.0],
        "m",
        "s",
    )
    .unwrap();
    assert_eq!(
        (three.mean, three.std, three.channels),
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], ChannelOrder::Rgb)
    );
    let err =
        InputConvention::from_values(ChannelOrder::Rgb, &[1.0, 2.0], &[1.0], "--onnx-mean", "s")
            .unwrap_err();
    assert!(
        err.contains("--onnx-mean") && err.contains("not 2"),
        "{err}"
    );
    let err = InputConvention::from_values(
        ChannelOrder::Rgb,
        &[0.0],
        &[1.0, 0.0, 1.0],
        "m",
        "teacher_std",
    )
    .unwrap_err();
    assert!(
        err.contains("teacher_std") && err.contains("non-zero"),
        "{err}"
    );
    let err =
        InputConvention::from_values(ChannelOrder::Rgb, &[f32::NAN], &[1.0], "teacher_mean", "s")
            .unwrap_err();
    assert!(
        err.contains("teacher_mean") && err.contains("finite"),
        "{err}"
    );
}
