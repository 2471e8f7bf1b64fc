#![warn(missing_docs)]
//! ffem's trainer, one concern per module:
//!
//! - [`config`]: the TOML recipe (`TrainConfig`), typed names for backbone, loss, optimiser,
//!   schedule, precision and device;
//! - [`schedule`], [`optimizer`], [`precision`]: learning rate, parameter update, mixed precision;
//! - [`step`]: one optimisation step, shared by the loop and the benchmark;
//! - [`trainer`]: the loop (data, steps, verification and checkpoints at their intervals);
//! - [`checkpoint`], [`metrics`], [`run_dir`]: what a run writes and `--resume` reads;
//! - [`demo`]: the built-in end-to-end job; [`bench`]: throughput measurements.
//!
//! Networks, losses and inference are `ffem-model`'s; records and the input pipeline are
//! `ffem-data`'s.

pub mod ablate;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod error;
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
