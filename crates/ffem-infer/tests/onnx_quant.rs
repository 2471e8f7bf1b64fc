//! Deployment precisions on hand-made graphs whose outputs are known: BatchNorm folding keeps the
//! function, fp16 weights change it by float16 rounding only, int8 quantisation (with the ReLU6
//! absorbed) stays within the quantisation step of the float result. Graphs run in tract.

mod common;

use std::collections::HashMap;

use ffem_infer::onnx_fold::fold_constant_dequantize;
use ffem_infer::onnx_import::prepare_external;
use ffem_infer::onnx_quant::{
    activation_ranges, fold_batchnorm, quantize_int8, tensors_to_calibrate, to_fp16_weights,
};
use tract_onnx::prelude::*;

/// Runs `model` on `n` images of `c` x `s` x `s` and returns the single output's values.
fn run(model: &[u8], images: &[f32], n: usize, c: usize, s: usize) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .unwrap()
        .with_input_fact(0, f32::fact([n, c, s, s]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::Array4::from_shape_vec((n, c, s, s), images.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(input).into())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// Four 3 x 3 x 3 images with values spread over [-3, 3].
fn inputs() -> Vec<f32> {
    (0..4 * 27)
        .map(|i| ((i * 37) % 61) as f32 / 10.0 - 3.0)
        .collect()
}

/// The expected 2 x 3 x 3 outputs of each image.
fn expected(images: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; images.len() / 27 * 18];
    for (img, o) in images.chunks_exact(27).zip(out.chunks_exact_mut(18)) {
        for p in 0..9 {
            let e =
                common::conv_bn_expected([img[p] as f64, img[9 + p] as f64, img[18 + p] as f64]);
            o[p] = e[0];
            o[9 + p] = e[1];
        }
    }
    out
}

#[test]
fn batchnorm_folds_into_the_convolution_without_changing_the_output() {
    let model = common::conv_bn_model();
    let (folded, n) = fold_batchnorm(&model).unwrap();
    assert_eq!(n, 1);
    assert!(!String::from_utf8_lossy(&folded).contains("BatchNormalization"));
    let x = inputs();
    let want = expected(&x);
    for (what, m) in [("float", &model), ("folded", &folded)] {
        let got = run(m, &x, 4, 3, 3);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{what}: {g} vs {w}");
        }
    }
}

#[test]
fn fp16_weights_round_only_to_half_precision() {
    let model = common::conv_bn_model();
    let (half, n) = to_fp16_weights(&model).unwrap();
    assert_eq!(n, common::conv_bn_weights().len());
    let x = inputs();
    let want = expected(&x);
    let got = run(&half, &x, 4, 3, 3);
    for (g, w) in got.iter().zip(&want) {
        // Each weight moves by at most 2^-11 of itself; outputs here are below 20.
        assert!((*g as f64 - w).abs() < 2e-2, "{g} vs {w}");
    }
    // The tiny face model's int8 weights survive the trip: folded to float, then halved.
    let tiny = prepare_external(&common::tiny_face_model(), None, None).unwrap();
    let floats = fold_constant_dequantize(&tiny.bytes).unwrap().bytes;
    let (half, _) = to_fp16_weights(&floats).unwrap();
    let side = common::SIDE as usize;
    let image: Vec<f32> = (0..3 * side * side).map(|i| i as f32).collect();
    let got = run(&half, &image, 1, 3, side);
    let means = std::array::from_fn(|c| {
        (0..side * side)
            .map(|p| (c * side * side + p) as f64)
            .sum::<f64>()
            / (side * side) as f64
    });
    common::assert_expected_embedding(&got, means, "tiny model in fp16");
}

#[test]
fn int8_quantisation_stays_within_the_quantisation_step() {
    let (folded, _) = fold_batchnorm(&common::conv_bn_model()).unwrap();
    let tensors = tensors_to_calibrate(&folded).unwrap();
    // The graph input and the Clip's output (the ReLU6 absorbed); `out` is the graph's output.
    assert_eq!(tensors, vec!["x".to_string(), "r".to_string()]);
    let x = inputs();
    let ranges = activation_ranges(&folded, &tensors, 3, &x, 4).unwrap();
    let (lo, hi) = ranges["x"];
    assert!(
        (lo - x.iter().copied().fold(f32::INFINITY, f32::min)).abs() < 1e-6
            && (hi - x.iter().copied().fold(f32::NEG_INFINITY, f32::max)).abs() < 1e-6,
        "the input's range is its min and max: {lo} {hi}"
    );
    let (int8, ops) = quantize_int8(&folded, &ranges).unwrap();
    assert_eq!(ops, 2);
    let text = String::from_utf8_lossy(&int8);
    assert!(text.contains("QuantizeLinear") && !text.contains("Clip"));
    let got = run(&int8, &x, 4, 3, 3);
    let want = expected(&x);
    let peak = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(&want) {
        // Two 8-bit activations and 7-bit weights: a few percent of the output's range.
        assert!(
            (*g as f64 - w).abs() < 0.05 * peak,
            "{g} vs {w} (peak {peak})"
        );
    }
    let missing = quantize_int8(&folded, &HashMap::new()).unwrap_err();
    assert!(missing.to_string().contains("`x`"), "{missing}");
}
