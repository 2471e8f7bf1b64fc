//! `ffem bench-train` (hidden): the throughput benchmark of `ffem_train::bench`.

use std::process::ExitCode;

use anyhow::Result;

/// Runs the benchmark with `args` (its flags, see bench/README.md).
pub fn bench_train(args: Vec<String>) -> Result<ExitCode> {
    let mut all = vec!["bench-train".to_string()];
    all.extend(args);
    println!("{}", ffem_train::bench::bench_train(&all)?);
    Ok(ExitCode::SUCCESS)
}
