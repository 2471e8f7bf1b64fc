//! The `ffem` command: a thin layer over the ffem-data, ffem-eval, ffem-detect, ffem-model and
//! ffem-train crates. Each subcommand is one file under `commands/`.

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    Pack(commands::pack::PackArgs),
    /// Find faces (MTCNN) in a folder of identity folders and write image_list.json with boxes and landmarks.
    Detect(commands::detect::DetectArgs),
    /// Summarise a packed dataset or a TFRecord file (TensorFlow-written ones too).
    Inspect(commands::inspect::InspectArgs),
    /// Train a model from a TOML config; with no arguments, run the built-in synthetic demo.
    Train(commands::train::TrainArgs),
    /// Generate synthetic identities, train a small model on the CPU and verify held-out ones.
    Demo(commands::demo::DemoArgs),
    /// Score a model (or precomputed embeddings) on a verification or identification protocol.
    Eval(commands::eval::EvalArgs),
    /// Embed images, folders or an image_list.json into an NPY file plus a CSV index.
    Embed(commands::embed::EmbedArgs),
    /// Compare two face images: cosine similarity and same / different.
    Verify(commands::verify::VerifyArgs),
    /// Find the k most similar gallery faces for a query image.
    Search(commands::search::SearchArgs),
    /// Print layers, parameter count and FLOPs of a model, config or backbone.
    Info(commands::info::InfoArgs),
    /// Export the embedding network for deployment (ONNX, BatchNorm folded).
    Export(commands::export::ExportArgs),
    /// Import an external ONNX face model into a model directory every command accepts.
    Import(commands::import::ImportArgs),
    /// Group unlabelled faces into people (an image_list.json with one label per person).
    Cluster(commands::cluster::ClusterArgs),
    /// Train and score every variant of a loss study (resumable); write report.md and charts.
    Ablate(commands::ablate::AblateArgs),
    /// Flag probably mislabelled images and duplicated identities of a list with a trained model.
    Clean(commands::clean::CleanArgs),
    /// Serve the model over HTTP: embed, verify, search and a gallery, with a web page at /.
    Serve(commands::serve::ServeArgs),
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
            // tract warns that a graph's opset is newer than those it is tested on at every load
            // of an imported model (SFace declares opset 21); the probe run at import already
            // showed that the graph runs, so that warning is noise to a user.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tract_onnx=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        // Bare `ffem`: what it can do, not a surprise training run.
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    let result = match command {
        Command::Pack(a) => commands::pack::pack(a),
        Command::Inspect(a) => commands::inspect::inspect(a),
        Command::Detect(a) => commands::detect::detect(a),
        Command::Train(a) => commands::train::train(a),
        Command::Demo(a) => commands::demo::demo(a),
        Command::Eval(a) => commands::eval::eval(a),
        Command::Embed(a) => commands::embed::embed(a),
        Command::Verify(a) => commands::verify::verify(a),
        Command::Search(a) => commands::search::search(a),
        Command::Info(a) => commands::info::info(a),
        Command::Export(a) => commands::export::export(a),
        Command::Import(a) => commands::import::import(a),
        Command::Cluster(a) => commands::cluster::cluster_faces(a),
        Command::Serve(a) => commands::serve::serve(a),
        Command::Clean(a) => commands::clean::clean(a),
        Command::Ablate(a) => commands::ablate::ablate(a),
        Command::BenchTrain { args } => commands::bench::bench_train(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// holds (most library errors repeat their source so that `to_string()` alone is complete).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text += ": ";
            }
            text += &part;
        }
    }
    text
}
