//! Fuzzing the ONNX readers with `ffem_testdata::fuzz`: the import rewrite every external model
//! goes through (`prepare_external`), the weight folding tract's engine applies
//! (`fold_constant_dequantize`) and the export rewrites (`fold_batchnorm`, `to_fp16_weights`).
//! Mutations of small models must end in a result or an error, never a panic, a hang or an
//! allocation out of proportion to the file. `FFEM_FUZZ_ITERATIONS` raises the count.

mod common;

use ffem_infer::onnx_fold::fold_constant_dequantize;
use ffem_infer::onnx_import::prepare_external;
use ffem_infer::onnx_quant::{fold_batchnorm, tensors_to_calibrate, to_fp16_weights};
use ffem_testdata::fuzz::{Watch, alone, fuzz, iterations};

#[global_allocator]
static ALLOCATOR: Watch = Watch;

#[test]
fn onnx_import_reader_survives_mutations() {
    let _alone = alone();
    let fixture = common::tiny_face_model();
    assert!(prepare_external(&fixture, None, None).is_ok());
    let (_, accepted, rejected) = fuzz("onnx import", &fixture, 12, iterations(3000), |bytes| {
        prepare_external(bytes, None, None).is_ok()
    });
    // Mutations that only touch weights leave a valid graph: both outcomes occur.
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn weight_folding_and_export_rewrites_survive_mutations() {
    let _alone = alone();
    let tiny = common::tiny_face_model();
    let conv_bn = common::conv_bn_model();
    for (name, fixture) in [("tiny face model", &tiny), ("conv + batchnorm", &conv_bn)] {
        let (_, accepted, rejected) = fuzz(name, fixture, 12, iterations(1500), |bytes| {
            let folded = fold_constant_dequantize(bytes).is_ok();
            let bn = fold_batchnorm(bytes).is_ok();
            let half = to_fp16_weights(bytes).is_ok();
            let calib = tensors_to_calibrate(bytes).is_ok();
            folded && bn && half && calib
        });
        assert!(
            accepted > 0 && rejected > 0,
            "{name}: {accepted} accepted, {rejected} rejected"
        );
    }
}
