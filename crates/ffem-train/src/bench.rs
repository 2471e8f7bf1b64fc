//! Throughput benchmarks shared by `ffem bench-train` and the bench scripts: training steps and
//! inference of one network on one device, on a fixed random batch. Training runs the trainer's
//! own [`train_step`] with the optimiser the configuration builds, so the benchmark measures what
//! trains.
//!
//! Flags: `--device cpu|vulkan --backbone large|small --minimalistic --head gnap|gdc|flatten
//! --loss l2softmax|arcface|cosface|combined --optimizer adam|adamw|sgd --batch 64 --classes 2000
//! --image 112 --steps 10 --warmup 2 --precision f32|f16|bf16 --infer --profile --burn-ops
//! --save-model DIR --engine burn|onnxruntime --sample-rate 1` (`--burn-ops`: burn's own operations instead of
//! ffem's CPU kernels, the "before" column). Steps are synchronised by reading the loss back.

use std::str::FromStr;
use std::time::Instant;

use crate::losses::ClassifierLoss;
use burn::module::Module;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
#[cfg(feature = "onnxruntime")]
use ffem_infer::ort_engine::ORT_VERSION;
use ffem_model::model::materialize;

use crate::config::{ConfigError, TrainConfig, parse_name};
use crate::error::TrainError;
use crate::optimizer;
use crate::precision::{LossScale, Precision};
use crate::step::{TrainModule, train_step};

#[cfg(not(feature = "onnxruntime"))]
const ORT_VERSION: &str = "";

/// The benchmark's flags, each checked: a bad value is an error naming the flag.
struct Flags<'a>(&'a [String]);

impl Flags<'_> {
    fn text(&self, name: &str, default: &str) -> String {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    fn number<T: FromStr>(&self, name: &str, default: &str) -> Result<T, ConfigError> {
        let v = self.text(name, default);
        v.parse()
            .map_err(|_| ConfigError(format!("{name} {v}: not a number")))
    }
    fn switch(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

/// One layer's forward pass on its fixed input, for timing.
type LayerForward<'a> = Box<dyn Fn() -> Tensor<4> + 'a>;

/// Per-layer profile: forward and forward+backward milliseconds of each part of each block of the
/// backbone, on its real input shape for `batch` images (`--profile`).
pub fn profile_layers(
    cfg: &TrainConfig,
    device: &burn::tensor::Device,
    batch: usize,
    repeats: usize,
) -> String {
    use ffem_model::backbones::mobilenet_v3::conv_out;
    let ad = device.clone().autodiff();
    let mcfg = cfg.model();
    let net = mcfg.backbone.init(&ad);
    materialize(&net);
    let time = |f: &dyn Fn() -> f32| -> f64 {
        let _ = f();
        let t = Instant::now();
        for _ in 0..repeats {
            let _ = f();
        }
        t.elapsed().as_secs_f64() * 1000.0 / repeats as f64
    };
    let mut out = format!(
        "{:<34} {:>12} {:>12} {:>16}\n",
        "layer (input shape)", "fwd ms", "fwd+bwd ms", "share of fwd+bwd"
    );
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut size = conv_out(mcfg.image_size, 3, mcfg.backbone.stem_stride);
    let (blocks, _, _) = mcfg.backbone.blocks();
    for (i, (b, block)) in blocks.iter().zip(&net.blocks).enumerate() {
        let x = Tensor::<4>::random(
            [batch, b.input, size, size],
            Distribution::Uniform(-1.0, 1.0),
            &ad,
        );
        let dsize = conv_out(size, b.kernel, b.stride);
        // (name, forward with autodiff, forward without) of each part of the block.
        let mut parts: Vec<(String, LayerForward<'_>, LayerForward<'_>)> = Vec::new();
        let xe = Tensor::<4>::random(
            [batch, b.expanded, size, size],
            Distribution::Uniform(-1.0, 1.0),
            &ad,
        )
        .require_grad();
        let xd = Tensor::<4>::random(
            [batch, b.expanded, dsize, dsize],
            Distribution::Uniform(-1.0, 1.0),
            &ad,
        )
        .require_grad();
        if let Some(e) = &block.expand {
            let (xa, xb) = (x.clone().require_grad(), x.clone().inner());
            parts.push((
                format!(
                    "b{:02} expand 1x1 {}->{} @{size}",
                    i + 1,
                    b.input,
                    b.expanded
                ),
                Box::new(move || e.forward(xa.clone())),
                Box::new(move || e.valid().forward(xb.clone())),
            ));
        }
        let (xa, xb) = (xe.clone(), xe.clone().inner());
        parts.push((
            format!(
                "b{:02} depthwise {k}x{k} s{} c{} @{size}",
                i + 1,
                b.stride,
                b.expanded,
                k = b.kernel
            ),
            Box::new(move || block.depthwise.forward(xa.clone())),
            Box::new(move || block.depthwise.valid().forward(xb.clone())),
        ));
        if let Some(se) = &block.se {
            let (xa, xb) = (xd.clone(), xd.clone().inner());
            parts.push((
                format!("b{:02} squeeze-excite c{} @{dsize}", i + 1, b.expanded),
                Box::new(move || se.forward(xa.clone())),
                Box::new(move || se.valid().forward(xb.clone())),
            ));
        }
        let (xa, xb) = (xd.clone(), xd.clone().inner());
        parts.push((
            format!(
                "b{:02} project 1x1 {}->{} @{dsize}",
                i + 1,
                b.expanded,
                b.out
            ),
            Box::new(move || block.project.forward(xa.clone())),
            Box::new(move || block.project.valid().forward(xb.clone())),
        ));
        for (name, train_fwd, infer_fwd) in parts {
            let fwd = time(&|| infer_fwd().sum().into_scalar::<f32>());
            let both = time(&|| {
                let y = train_fwd().sum();
                let v = y.clone().into_scalar::<f32>();
                let _ = y.backward();
                v
            });
            rows.push((name, fwd, both));
        }
        size = dsize;
    }
    let total: f64 = rows.iter().map(|r| r.2).sum();
    for (name, f, b) in &rows {
        out += &format!(
            "{name:<34} {f:>12.2} {b:>12.2} {:>15.1}%\n",
            100.0 * b / total
        );
    }
    let sum_kind = |k: &str| {
        rows.iter()
            .filter(|r| r.0.contains(k))
            .map(|r| r.2)
            .sum::<f64>()
    };
    out += &format!(
        "total fwd+bwd of the blocks: {total:.1} ms per batch of {batch}; depthwise {:.0}%, 1x1 convs {:.0}%, squeeze-excite {:.0}%\n",
        100.0 * sum_kind("depthwise") / total,
        100.0 * (sum_kind("expand") + sum_kind("project")) / total,
        100.0 * sum_kind("squeeze") / total
    );
    out
}

/// Runs the benchmark described by `args` (the flags above; `args[0]` is the program name) and
/// returns the line it prints.
pub fn bench_train(args: &[String]) -> Result<String, TrainError> {
    let flags = Flags(args);
    let batch: usize = flags.number("--batch", "64")?;
    let classes: usize = flags.number("--classes", "2000")?;
    let image: usize = flags.number("--image", "112")?;
    let steps: usize = flags.number("--steps", "10")?;
    let warmup: usize = flags.number("--warmup", "2")?;
    let precision: Precision = parse_name(&flags.text("--precision", "f32"))?;
    let device_name = flags.text("--device", "cpu");
    let mut overrides = vec![
        format!(
            "backbone=\"mobilenet_v3_{}\"",
            flags.text("--backbone", "large")
        ),
        format!("head=\"{}\"", flags.text("--head", "gnap")),
        format!("loss=\"{}\"", flags.text("--loss", "arcface")),
        format!("optimizer=\"{}\"", flags.text("--optimizer", "sgd")),
        format!("device=\"{device_name}\""),
        format!(
            "sample_rate={:?}",
            flags.number::<f64>("--sample-rate", "1")?
        ),
        format!("image_size={image}"),
    ];
    if flags.switch("--minimalistic") {
        overrides.push("minimalistic=true".into());
    }
    let cfg = TrainConfig::load(None, &overrides)?;
    let burn_ops = flags.switch("--burn-ops");
    ffem_model::cpu::set_cpu_kernels(!burn_ops);
    let device = cfg.device.device()?;
    let label = format!(
        "{} {:?}{} + {:?}, {}x{}, batch {batch}, {:?}, {:?}{}",
        device_name,
        cfg.model().backbone.variant,
        if cfg.minimalistic {
            " minimalistic"
        } else {
            ""
        },
        cfg.head,
        image,
        image,
        precision,
        cfg.loss,
        if burn_ops { ", burn's operations" } else { "" }
    );
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--save-model")
        .and_then(|i| args.get(i + 1))
    {
        // A freshly initialised model of this architecture, for end-to-end `ffem embed` timing.
        let model = cfg.model().init(&device).valid();
        ffem_model::model::save_model(std::path::Path::new(dir), &cfg.model(), &model)?;
        return Ok(format!("saved an untrained [{label}] model to {dir}"));
    }
    if flags.switch("--profile") {
        return Ok(profile_layers(&cfg, &device, batch, steps.max(1)));
    }
    let x = Tensor::<4>::random(
        [batch, 3, image, image],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );

    if flags.switch("--infer") {
        let model = cfg.model().init(&device).valid();
        let (run, engine): (Box<dyn Fn()>, String) =
            if flags.text("--engine", "burn") == "onnxruntime" {
                let images = x
                    .clone()
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("f32 images");
                match onnxruntime_batch(&cfg, &model, images, batch) {
                    Ok(run) => (run, format!(", onnxruntime {ORT_VERSION}")),
                    Err(message) => return Ok(message),
                }
            } else {
                let run = move || {
                    let e = model.forward(x.clone());
                    let _ = e.sum().into_scalar::<f32>();
                };
                (Box::new(run), String::new())
            };
        for _ in 0..warmup {
            run();
        }
        let t = Instant::now();
        for _ in 0..steps {
            run();
        }
        let s = t.elapsed().as_secs_f64();
        return Ok(format!(
            "ffem inference [{label}{engine}]: {:.1} images/s ({steps} batches in {s:.2} s)",
            (steps * batch) as f64 / s
        ));
    }

    let ad = device.clone().autodiff();
    let x = x.to_device(&ad);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % classes as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
    let mut module = TrainModule {
        model: cfg.model().init(&ad),
        classifier: ClassifierLoss::new(cfg.loss(), classes, cfg.embedding_dim, &ad)
            .with_sample_rate(cfg.sample_rate),
        peer: None,
        distill: None,
    };
    materialize(&module);
    let mut optim = optimizer::build(&cfg);
    let mut loss_scale = LossScale::default();
    let mut last = 0.0;
    let mut step = |module: TrainModule| {
        let r = train_step(
            module,
            &mut optim,
            x.clone(),
            y.clone(),
            None,
            1e-3,
            precision,
            &mut loss_scale,
            false,
            0.0,
        );
        last = r.loss;
        r.module
    };
    for _ in 0..warmup {
        module = step(module);
    }
    let t = Instant::now();
    for _ in 0..steps {
        module = step(module);
    }
    let s = t.elapsed().as_secs_f64();
    drop(module);
    Ok(format!(
        "ffem training [{label}, {:?}]: {:.1} images/s ({steps} steps in {s:.2} s, last loss {last:.3})",
        cfg.optimizer,
        (steps * batch) as f64 / s
    ))
}

/// One inference batch of `model` exported to ONNX and run by ONNX Runtime (`--infer --engine
/// onnxruntime`), or the message to print when that cannot be.
#[cfg(feature = "onnxruntime")]
fn onnxruntime_batch(
    cfg: &TrainConfig,
    model: &ffem_model::EmbeddingModel,
    images: Vec<f32>,
    batch: usize,
) -> Result<Box<dyn Fn()>, String> {
    let engine = ffem_infer::ort_engine::OrtEmbedder::new(model, &cfg.model(), 0)
        .map_err(|e| e.to_string())?;
    Ok(Box::new(move || {
        engine
            .embed_prepared(&images, batch)
            .unwrap_or_else(|e| panic!("{e}"));
    }))
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime_batch(
    _: &TrainConfig,
    _: &ffem_model::EmbeddingModel,
    _: Vec<f32>,
    _: usize,
) -> Result<Box<dyn Fn()>, String> {
    Err("--engine onnxruntime: build with --features onnxruntime (and run scripts/fetch-onnxruntime.sh)".into())
}
