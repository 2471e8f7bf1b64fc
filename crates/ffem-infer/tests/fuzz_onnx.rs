//! Fuzzing the ONNX import reader (`prepare_external`, the protobuf-level rewrite every external
//! model goes through) with `ffem_testdata::fuzz`: mutations of a small face model with old
//! converters' quirks must end in a rewritten graph or an error, never a panic, a hang or an
//! allocation out of proportion to the file. `FFEM_FUZZ_ITERATIONS` raises the count.

mod common;

use ffem_infer::onnx_import::prepare_external;
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
