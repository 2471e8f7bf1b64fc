//! Inference images/s of the exported ONNX graph in tract (CPU), for a model configuration:
//! `bench_tract [large|small] [gnap|gdc|flatten] [--minimalistic] [BATCH]`.
use std::time::Instant;

use ffem_train::TrainConfig;
use tract_onnx::prelude::*;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let backbone = a.get(1).cloned().unwrap_or_else(|| "large".into());
    let head = a.get(2).cloned().unwrap_or_else(|| "flatten".into());
    let minimal = a.iter().any(|x| x == "--minimalistic");
    let batch: usize = a.iter().filter_map(|x| x.parse().ok()).next().unwrap_or(64);
    let mut o = vec![
        format!("backbone=\"mobilenet_v3_{backbone}\""),
        format!("head=\"{head}\""),
    ];
    if minimal {
        o.push("minimalistic=true".into());
    }
    let cfg = TrainConfig::load(None, &o).unwrap().model();
    let device = burn::tensor::Device::flex();
    let model = cfg.init(&device);
    ffem_model::model::materialize(&model);
    let bytes = ffem_model::onnx::to_onnx(&model, &cfg);
    let s = cfg.image_size;
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .with_input_fact(0, f32::fact([batch, 3, s, s]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: Tensor = tract_ndarray::Array4::<f32>::from_elem((batch, 3, s, s), 0.1).into();
    let _ = plan.run(tvec!(input.clone().into())).unwrap();
    let t = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        let _ = plan.run(tvec!(input.clone().into())).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "tract inference [{backbone}{} + {head}, {s}x{s}, batch {batch}]: {:.1} images/s",
        if minimal { " minimalistic" } else { "" },
        (reps * batch) as f64 / secs
    );
}
