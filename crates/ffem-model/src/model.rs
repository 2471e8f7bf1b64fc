//! The embedding network (backbone + head), its configuration, saving and loading.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::hard_swish;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backbones::mobilenet_v3::{Act, Activation, MobileNetV3, MobileNetV3Config};
use crate::heads::{FlattenHead, GdcHead, GnapHead, HeadKind};

/// Everything needed to rebuild an embedding network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The backbone.
    pub backbone: MobileNetV3Config,
    /// The head.
    pub head: HeadKind,
    /// Embedding dimension.
    pub embedding_dim: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Dropout of the flatten head.
    pub dropout: f64,
    /// Faces are aligned by landmarks (when known) rather than cropped by box.
    #[serde(default)]
    pub align: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            backbone: MobileNetV3Config::large(),
            head: HeadKind::Gnap,
            embedding_dim: 512,
            image_size: 112,
            dropout: 0.2,
            align: false,
        }
    }
}

impl ModelConfig {
    /// MobileNetV3-Small at `width` with a GNAP head, `embedding_dim` wide, for `image_size`
    /// inputs: the small networks of the demo, the tests and the benchmarks.
    pub fn small(width: f32, embedding_dim: usize, image_size: usize) -> Self {
        ModelConfig {
            backbone: MobileNetV3Config {
                width,
                ..MobileNetV3Config::small()
            },
            embedding_dim,
            image_size,
            ..ModelConfig::default()
        }
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> EmbeddingModel {
        let c = self.backbone.out_channels();
        let s = self.backbone.feature_size(self.image_size);
        let act = match self.backbone.activation {
            Activation::Relu6 => Act::Relu6,
            Activation::Relu => Act::Relu,
        };
        EmbeddingModel {
            backbone: self.backbone.init(device),
            gnap: (self.head == HeadKind::Gnap)
                .then(|| GnapHead::new(c, self.embedding_dim, device)),
            gdc: (self.head == HeadKind::Gdc)
                .then(|| GdcHead::new(c, s, self.embedding_dim, act, device)),
            flatten: (self.head == HeadKind::Flatten)
                .then(|| FlattenHead::new(c, s, self.embedding_dim, self.dropout, device)),
        }
    }
}

/// Backbone + one head: images (N, 3, S, S) in [-1, 1] -> embeddings (N, D), not normalised.
#[derive(Module, Debug)]
pub struct EmbeddingModel {
    /// Feature extractor.
    pub backbone: MobileNetV3,
    /// GNAP head, when chosen.
    pub gnap: Option<GnapHead>,
    /// GDC head, when chosen.
    pub gdc: Option<GdcHead>,
    /// Flatten head, when chosen.
    pub flatten: Option<FlattenHead>,
}

impl EmbeddingModel {
    /// Forward pass.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let f = self.backbone.forward(images);
        if let Some(h) = &self.gnap {
            h.forward(f)
        } else if let Some(h) = &self.gdc {
            h.forward(f)
        } else if let Some(h) = &self.flatten {
            h.forward(f)
        } else {
            unreachable!("an embedding model always has a head")
        }
    }
}

/// The ImageNet classifier torchvision puts on MobileNetV3 (pool, linear, hard-swish, dropout,
/// linear to 1000), only to check parameter counts against torchvision.
#[derive(Module, Debug)]
pub struct ImageNetTop {
    /// First linear.
    pub fc1: Linear,
    /// Dropout.
    pub dropout: Dropout,
    /// Classifier.
    pub fc2: Linear,
}

impl ImageNetTop {
    /// The top for a backbone configuration.
    pub fn new(cfg: &MobileNetV3Config, device: &Device) -> Self {
        let (_, last, hidden) = cfg.blocks();
        ImageNetTop {
            fc1: LinearConfig::new(last, hidden).init(device),
            dropout: DropoutConfig::new(0.2).init(),
            fc2: LinearConfig::new(hidden, 1000).init(device),
        }
    }

    /// Feature map -> logits.
    pub fn forward(&self, f: Tensor<4>) -> Tensor<2> {
        let [n, c, _, _] = f.dims();
        let x = adaptive_avg_pool2d(f, [1, 1]).reshape([n, c]);
        self.fc2.forward(crate::heads::dropout(
            &self.dropout,
            hard_swish(self.fc1.forward(x)),
        ))
    }
}

/// File names inside a model directory.
pub const CONFIG_FILE: &str = "model.json";
/// Weights file inside a model directory.
pub const WEIGHTS_FILE: &str = "weights.bpk";

/// Errors while saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An operating-system error on a model file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An atomic write failed (the message names the file).
    #[error(transparent)]
    Write(#[from] ffem_data::DataError),
    /// I/O on a named file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong and what to do.
        message: String,
    },
}

fn file_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes `bytes` to `path` via a temporary name and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    Ok(ffem_data::atomic::write_file(path, bytes)?)
}

/// Saves config and weights into directory `dir` (each file written atomically).
pub fn save_model(
    dir: &Path,
    config: &ModelConfig,
    model: &EmbeddingModel,
) -> Result<(), ModelError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| file_err(dir, format!("cannot serialise weights: {e:?}")))?;
    write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    Ok(ffem_data::atomic::write_json(
        &dir.join(CONFIG_FILE),
        config,
    )?)
}

/// Loads a model directory written by [`save_model`].
pub fn load_model(
    dir: &Path,
    device: &Device,
) -> Result<(ModelConfig, EmbeddingModel), ModelError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| file_err(&cfg_path, format!("{e}: pass a model directory written by `ffem train` (it holds {CONFIG_FILE} and {WEIGHTS_FILE})")))?;
    let config: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| file_err(&cfg_path, format!("not a model configuration: {e}")))?;
    let model = load_weights(&dir.join(WEIGHTS_FILE), config.init(device))?;
    Ok((config, model))
}

/// Loads weights into a freshly built model.
pub fn load_weights<M: Module>(path: &Path, model: M) -> Result<M, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| file_err(path, format!("not a weights file: {e:?}")))?;
    model
        .try_load_record(record)
        .map_err(|e| file_err(path, format!("weights do not fit the model: {e:?}")))
}

/// A batch of NCHW f32 images as a tensor on `device`.
pub fn images_tensor(images: &[f32], n: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(images.to_vec(), [n, 3, size, size]), device)
}

/// Copies a 2-D tensor to a Vec.
pub fn to_vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// Counts trainable parameters: burn's `num_params` also counts BatchNorm running statistics,
/// which PyTorch and Keras report as buffers, not parameters.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Counter {
        path: Vec<String>,
        total: usize,
    }
    impl burn::module::ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let running = self.path.last().is_some_and(|n| n.starts_with("running_"));
            if !running {
                self.total += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Counter {
        path: Vec::new(),
        total: 0,
    };
    module.visit(&mut c);
    c.total
}

/// Initialises every lazily-initialised parameter now. burn creates parameters on first use; a
/// cast copy made before that would initialise its own, leaving the f32 masters untouched.
pub fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}
