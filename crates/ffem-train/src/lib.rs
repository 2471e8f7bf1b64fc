#![warn(missing_docs)]
//! ffem's trainer, one concern per module:
//!
//! - [`config`]: the TOML recipe (`TrainConfig`), typed names for backbone, loss, optimiser,
//!   schedule, precision and device;
//! - [`schedule`], [`optimizer`], [`precision`]: learning rate, parameter update, mixed precision;
//! - [`losses`]: the identity classifiers and their losses (L2-softmax, the margin family,
//!   proxies, center, triplet; Partial FC); [`distill`]: the distillation head and teacher tables;
//! - [`step`]: one optimisation step, shared by the loop and the benchmark;
//! - [`trainer`]: the loop (data, steps, verification and checkpoints at their intervals);
//! - [`checkpoint`], [`metrics`], [`run_dir`]: what a run writes and `--resume` reads;
//! - [`ablate`]: the loss study; [`teacher`]: where distillation targets come from;
//! - [`demo`]: the built-in end-to-end job; [`bench`]: throughput measurements.
//!
//! Networks are `ffem-model`'s, running them on faces (validation sets, teachers) `ffem-infer`'s;
//! records and the input pipeline are `ffem-data`'s.

pub mod ablate;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod distill;
pub mod error;
pub mod losses;
pub mod metrics;
pub mod optimizer;
pub mod precision;
pub mod run_dir;
pub mod schedule;
pub mod step;
pub mod teacher;
pub mod trainer;

pub use config::TrainConfig;
pub use error::TrainError;
pub use trainer::{TrainOptions, TrainSummary, train};
