//! Library use: load a model once, embed two face images, compare them.
//!
//!     cargo run --release -p ffem-model --example embed_and_compare -- MODEL_DIR a.jpg b.jpg
//!
//! (`ffem train` with no arguments leaves a model in runs/demo/run/model.)
use ffem_infer::face::FaceModel;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: embed_and_compare MODEL_DIR a.jpg b.jpg");
        std::process::exit(2);
    }
    let model = FaceModel::load(std::path::Path::new(&args[1])).unwrap_or_else(|e| panic!("{e}"));
    let a = model
        .embed_encoded(&std::fs::read(&args[2]).expect("read a"), None, None)
        .expect("embed a");
    // The same API takes decoded pixels too.
    let rgb = image::open(&args[3]).expect("decode b").to_rgb8();
    let b = model.embed_rgb(&rgb);
    let sim = FaceModel::compare(&a, &b);
    match model.threshold {
        Some(t) => println!(
            "cosine similarity {sim:.4}: {} (threshold {t:.4})",
            if sim >= t {
                "same person"
            } else {
                "different people"
            }
        ),
        None => println!(
            "cosine similarity {sim:.4} (no saved threshold: run `ffem eval` on the model)"
        ),
    }
}
