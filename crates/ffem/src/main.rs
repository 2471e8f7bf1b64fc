//! The `ffem` command: a thin layer over the ffem-data, ffem-eval and ffem-model crates.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Training and embedding free and allocate the same activation-sized buffers every batch; this
/// allocator keeps them instead of returning them to the kernel (see `ffem_kernels::alloc`).
#[global_allocator]
static ALLOCATOR: ffem_kernels::alloc::BlockCache = ffem_kernels::alloc::BlockCache;

/// Train and use face-embedding models.
#[derive(Parser)]
#[command(name = "ffem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate an image_list.json and pack its images into TFRecord shards plus a manifest.
    Pack(commands::PackArgs),
    /// Find faces (MTCNN) in a folder of identity folders and write image_list.json with boxes and landmarks.
    Detect(commands::DetectArgs),
    /// Summarise a packed dataset or a TFRecord file (TensorFlow-written ones too).
    Inspect(commands::InspectArgs),
    /// Train a model from a TOML config; with no arguments, run the built-in synthetic demo.
    Train(commands::TrainArgs),
    /// Generate synthetic identities, train a small model on the CPU and verify held-out ones.
    Demo(commands::DemoArgs),
    /// Score a model (or precomputed embeddings) on a verification or identification protocol.
    Eval(commands::EvalArgs),
    /// Embed images, folders or an image_list.json into an NPY file plus a CSV index.
    Embed(commands::EmbedArgs),
    /// Compare two face images: cosine similarity and same / different.
    Verify(commands::VerifyArgs),
    /// Find the k most similar gallery faces for a query image.
    Search(commands::SearchArgs),
    /// Print layers, parameter count and FLOPs of a model, config or backbone.
    Info(commands::InfoArgs),
    /// Export the embedding network for deployment (ONNX, BatchNorm folded).
    Export(commands::ExportArgs),
    /// Measure training or inference images/s of a network on a device (flags as bench/README.md).
    #[command(hide = true, disable_help_flag = true)]
    BenchTrain {
        /// Flags passed to the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Pack(a)) => commands::pack(a),
        Some(Command::Inspect(a)) => commands::inspect(a),
        Some(Command::Detect(a)) => commands::detect(a),
        Some(Command::Train(a)) => commands::train(a),
        Some(Command::Demo(a)) => commands::demo(a),
        Some(Command::Eval(a)) => commands::eval(a),
        Some(Command::Embed(a)) => commands::embed(a),
        Some(Command::Verify(a)) => commands::verify(a),
        Some(Command::Search(a)) => commands::search(a),
        Some(Command::Info(a)) => commands::info(a),
        Some(Command::Export(a)) => commands::export(a),
        Some(Command::BenchTrain { args }) => {
            let mut all = vec!["bench-train".to_string()];
            all.extend(args);
            println!("{}", ffem_model::bench::bench_train(&all));
            Ok(ExitCode::SUCCESS)
        }
        None => commands::demo(commands::DemoArgs::default_with_dir(PathBuf::from(
            "runs/demo",
        ))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
