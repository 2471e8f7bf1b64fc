//! ffem's training step against the PyTorch reference's on identical weights and data
//! (issue 11, part 4): `torch_parity DIR`, where DIR was written by `bench/torch_parity.py`.
//!
//! The reference's parameters go into ffem's MobileNetV3-Small + GNAP and classifier in
//! declaration order (both follow torchvision's layer order; shapes are checked, the GNAP linear
//! is transposed), then for each loss of the CFP recipe (L2-softmax with Adam, ArcFace with SGD
//! Nesterov) it prints the first loss and the relative L2 difference of every gradient, and after
//! the same optimiser steps on the same batch the losses, the parameters, BatchNorm's running
//! statistics and the inference-mode output layer by layer (mean and largest difference, the
//! worst eight tensors; `PARITY_ALL=1` lists all). A real difference in the network, the loss,
//! BatchNorm or the optimiser shows as a difference far above f32 rounding.
#[global_allocator]
static ALLOCATOR: ffem_kernels::alloc::BlockCache = ffem_kernels::alloc::BlockCache;

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ffem_train::config::TrainConfig;
use ffem_train::losses::ClassifierLoss;
use ffem_train::precision::{LossScale, Precision, forward_embeddings};
use ffem_train::step::{TrainModule, train_step};

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Puts the next values of `source` into every trainable parameter, in visit order.
struct Load<'a> {
    source: &'a [f32],
    /// The reference's shapes, in the same order.
    shapes: &'a [Vec<usize>],
    at: usize,
    count: usize,
}

/// Whether ffem's tensor of `dims` is the transpose of torch's `theirs` (Linear weights).
fn transposed(dims: &[usize], theirs: &[usize]) -> bool {
    if dims == theirs {
        return false;
    }
    assert!(
        dims.len() == 2 && dims[0] == theirs[1] && dims[1] == theirs[0],
        "ffem's {dims:?} against the reference's {theirs:?}: the layer orders differ"
    );
    true
}

/// Transposes a row-major `rows` x `cols` matrix.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| v[(i % rows) * cols + i / rows])
        .collect()
}

impl ModuleMapper for Load<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, _) = param.consume();
        if !tensor.is_require_grad() {
            // BatchNorm's running statistics: buffers, not parameters.
            return Param::initialized(id, tensor);
        }

        let dims = tensor.dims().to_vec();
        let n: usize = dims.iter().product();
        let theirs = &self.shapes[self.count];
        let mut values = self.source[self.at..self.at + n].to_vec();
        if transposed(&dims, theirs) {
            values = transpose(&values, theirs[0], theirs[1]);
        }
        self.at += n;
        self.count += 1;
        let device = tensor.device();
        Param::initialized(
            id,
            Tensor::<D>::from_data(TensorData::new(values, dims), &device).require_grad(),
        )
    }
}

/// Every trainable parameter's values (or gradient), flattened in torch's layout, in visit order.
struct Collect<'a> {
    grads: Option<&'a GradientsParams>,
    /// Collect BatchNorm's running statistics instead of the parameters.
    stats: bool,
    shapes: &'a [Vec<usize>],
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if t.is_require_grad() == self.stats {
            return;
        }
        if self.stats {
            self.out.push(
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
            return;
        }
        let dims = t.dims().to_vec();
        let t = match self.grads {
            Some(g) => g
                .get::<D>(param.id)
                .expect("a gradient for every parameter"),
            None => t.inner(),
        };
        let mut v: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        if transposed(&dims, &self.shapes[self.out.len()]) {
            v = transpose(&v, dims[0], dims[1]);
        }
        self.out.push(v);
    }
}

/// What [`Collect`] gathers from `module`: gradients from `grads`, else the parameters' values,
/// or with `stats` BatchNorm's running statistics.
fn collect<M: Module>(
    module: &M,
    grads: Option<&GradientsParams>,
    stats: bool,
    shapes: &[Vec<usize>],
) -> Vec<Vec<f32>> {
    let mut collect = Collect {
        grads,
        stats,
        shapes,
        out: vec![],
    };
    module.visit(&mut collect);
    collect.out
}

/// `|a - b| / |b|` over the whole tensor (L2 norms).
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-300)).sqrt()
}

fn l2(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()
}

/// Prints the relative L2 difference of every tensor whose reference norm is at least 1e-4 of
/// the largest (the rest are gradients that are zero in exact arithmetic, such as the shift of a
/// BatchNorm that feeds another BatchNorm through a linear layer, and hold only rounding).
fn compare(names: &[String], ours: &[Vec<f32>], theirs: &[f32], what: &str) {
    let mut at = 0;
    let mut rows = Vec::new();
    for (i, v) in ours.iter().enumerate() {
        let t = &theirs[at..at + v.len()];
        at += v.len();
        rows.push((rel_l2(v, t), names[i].clone(), l2(v), l2(t)));
    }
    assert_eq!(at, theirs.len(), "{what}: sizes differ");
    let largest = rows.iter().map(|r| r.3).fold(0.0, f64::max);
    let (mut kept, dropped): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.3 >= 1e-4 * largest);
    kept.sort_by(|a, b| b.0.total_cmp(&a.0));
    let all: f64 = kept.iter().map(|r| r.0).sum::<f64>() / kept.len() as f64;
    println!(
        "{what}: relative L2 difference mean {all:.2e}, largest {:.2e}, over {} tensors ({} near zero left out)",
        kept[0].0,
        kept.len(),
        dropped.len()
    );
    let show = std::env::var("PARITY_ALL").map_or(8, |_| usize::MAX);
    for (d, name, n_ours, n_theirs) in kept.iter().take(show) {
        println!("    {d:.2e}  {name}  |ffem| {n_ours:.4e}  |torch| {n_theirs:.4e}");
    }
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: torch_parity DIR"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let batch = manifest["batch"].as_u64().unwrap() as usize;
    let classes = manifest["classes"].as_u64().unwrap() as usize;
    let steps = manifest["steps"].as_u64().unwrap() as usize;
    let shape = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    let layers = manifest["net"].as_array().unwrap();
    let mut names: Vec<String> = layers
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.push("classifier.weight".into());
    names.push("classifier.bias".into());
    let net = read_f32(&dir.join("params.bin"));
    let input = read_f32(&dir.join("input.bin"));
    let labels: Vec<i64> = std::fs::read(dir.join("labels.bin"))
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let device = Device::flex().autodiff();
    for (loss, config) in [
        ("l2softmax", "configs/cfp_step1.toml"),
        ("arcface", "configs/cfp_step2.toml"),
    ] {
        // The scale the reference uses in step 2 (reference_run.sh sets it likewise).
        let lr = |key: &str| manifest[key].as_f64().unwrap();
        let overrides: Vec<String> = match loss {
            "arcface" => vec!["scale=64.0".into(), format!("lr={}", lr("sgd_lr"))],
            _ => vec![format!("lr={}", lr("adam_lr"))],
        };
        let cfg = TrainConfig::load(Some(Path::new(config)), &overrides).unwrap();
        let mut shapes: Vec<Vec<usize>> = layers.iter().map(|p| shape(&p["shape"])).collect();
        shapes.extend(
            manifest["losses"][loss]["classifier"]
                .as_array()
                .unwrap()
                .iter()
                .map(shape),
        );
        let mut source = net.clone();
        source.extend(read_f32(&dir.join(format!("classifier_{loss}.bin"))));
        // Built twice: BatchNorm's running statistics are shared between clones, and the
        // gradient check's forward must not count as one of the steps' updates.
        let loaded = || {
            let module = TrainModule {
                model: cfg.model().init(&device),
                classifier: ClassifierLoss::new(cfg.loss(), classes, cfg.embedding_dim, &device),
                peer: None,
                distill: None,
            };
            let mut load = Load {
                source: &source,
                shapes: &shapes,
                at: 0,
                count: 0,
            };
            let module = module.map(&mut load);
            assert_eq!(
                load.at,
                source.len(),
                "{loss}: parameter count differs from the reference's"
            );
            (module, load.count)
        };
        let (module, count) = loaded();
        let images_on = |device: &Device| {
            Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, 3, 112, 112]), device)
        };
        let images = || images_on(&device);
        let labels_t =
            || Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &device);

        let emb = forward_embeddings(&module.model, images(), Precision::F32);
        let out = module.classifier.forward(emb, labels_t());
        let first: f32 = out.loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(out.loss.backward(), &module);
        let gradients = collect(&module, Some(&grads), false, &shapes);
        let reference = &manifest["losses"][loss]["losses"];
        println!(
            "== {loss}: {} parameter tensors; first loss ffem {first:.5}, torch {:.5}",
            count, reference[0]
        );
        compare(
            &names,
            &gradients,
            &read_f32(&dir.join(format!("grads_{loss}.bin"))),
            "gradients",
        );

        let (mut module, _) = loaded();
        let mut optim = ffem_train::optimizer::build(&cfg);
        let mut scale = LossScale::default();
        let mut losses = vec![];
        for _ in 0..steps {
            let r = train_step(
                module,
                &mut optim,
                images(),
                labels_t(),
                None,
                cfg.lr,
                Precision::F32,
                &mut scale,
                false,
                0.0,
            );
            losses.push(r.loss);
            module = r.module;
        }
        let emb = forward_embeddings(&module.model, images(), Precision::F32);
        let last: f32 = module
            .classifier
            .forward(emb, labels_t())
            .loss
            .into_scalar();
        losses.push(last as f64);
        println!(
            "losses ffem  {:?}",
            losses
                .iter()
                .map(|v| (v * 1e5).round() / 1e5)
                .collect::<Vec<_>>()
        );
        println!("losses torch {reference}");
        compare(
            &names,
            &collect(&module, None, false, &shapes),
            &read_f32(&dir.join(format!("after_{loss}.bin"))),
            "parameters after the steps",
        );
        // valid() folds every thread's last running-statistics update in (burn keeps them apart
        // until then), so it comes before the statistics are read.
        let inference = module.model.valid();
        let stat_names: Vec<String> = manifest["stats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        compare(
            &stat_names,
            &collect(&module.model, None, true, &shapes),
            &read_f32(&dir.join(format!("stats_{loss}.bin"))),
            "BatchNorm running statistics after the steps",
        );
        let plain = images_on(&device.clone().inner());
        // Layer by layer in inference mode: torchvision's features[0] (stem), [1..=11] (blocks),
        // [12] (last convolution).
        let theirs_layers = read_f32(&dir.join(format!("eval_layers_{loss}.bin")));
        let mut at = 0;
        let mut y = plain.clone();
        let backbone = &inference.backbone;
        let layer_count = backbone.blocks.len() + 2;
        for i in 0..layer_count {
            y = if i == 0 {
                backbone.stem.forward(y)
            } else if i <= backbone.blocks.len() {
                backbone.blocks[i - 1].forward(y)
            } else {
                backbone.last.forward(y)
            };
            let v: Vec<f32> = y.clone().into_data().try_into_vec::<f32>().unwrap();
            let t = &theirs_layers[at..at + v.len()];
            at += v.len();
            println!(
                "    inference, features[{i}]: relative L2 difference {:.2e}, norm ffem {:.4} torch {:.4}",
                rel_l2(&v, t),
                l2(&v),
                l2(t)
            );
        }
        let ours: Vec<f32> = inference
            .forward(plain)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let theirs = read_f32(&dir.join(format!("eval_{loss}.bin")));
        let dim = ours.len() / batch;
        let lowest_cosine = ours
            .chunks(dim)
            .zip(theirs.chunks(dim))
            .map(|(a, b)| ffem_eval::embedding::cosine(a, b))
            .fold(1.0, f32::min);
        println!(
            "inference embeddings after the steps: relative L2 difference {:.2e}, mean norm ffem {:.4} torch {:.4}, lowest cosine to the reference's {:.6}",
            rel_l2(&ours, &theirs),
            ours.chunks(dim).map(l2).sum::<f64>() / batch as f64,
            theirs.chunks(dim).map(l2).sum::<f64>() / batch as f64,
            lowest_cosine
        );
    }
}
