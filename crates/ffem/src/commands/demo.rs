//! `ffem demo`: the built-in end-to-end job on synthetic identities.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ffem_train::demo::{DemoOptions, run_demo};

/// Arguments of `ffem demo`; the defaults are `DemoOptions::default()`'s.
#[derive(Args)]
pub struct DemoArgs {
    /// Working directory.
    #[arg(long, default_value_os_t = DemoOptions::default().dir)]
    dir: PathBuf,
    /// Identities to train on.
    #[arg(long, default_value_t = DemoOptions::default().train_identities)]
    train_identities: u64,
    /// Held-out identities to verify on.
    #[arg(long, default_value_t = DemoOptions::default().test_identities)]
    test_identities: u64,
    /// Images per identity.
    #[arg(long, default_value_t = DemoOptions::default().per_identity)]
    per_identity: u32,
    /// Seed.
    #[arg(long, default_value_t = DemoOptions::default().seed)]
    seed: u64,
    /// Override a training key (repeatable), e.g. --set epochs=4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl Default for DemoArgs {
    /// What `ffem demo` runs without flags (`ffem train` without arguments runs it too).
    fn default() -> Self {
        let d = DemoOptions::default();
        DemoArgs {
            dir: d.dir,
            train_identities: d.train_identities,
            test_identities: d.test_identities,
            per_identity: d.per_identity,
            seed: d.seed,
            overrides: d.overrides,
        }
    }
}

/// Runs `ffem demo`.
pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    eprintln!(
        "ffem demo: {} synthetic training identities x {} images, {} held out; training on the CPU (a few minutes)",
        a.train_identities, a.per_identity, a.test_identities
    );
    let r = run_demo(&DemoOptions {
        dir: a.dir.clone(),
        train_identities: a.train_identities,
        test_identities: a.test_identities,
        per_identity: a.per_identity,
        seed: a.seed,
        overrides: a.overrides,
        progress: true,
    })?;
    print!(
        "{}",
        r.verification
            .table("verification on held-out synthetic identities")
    );
    println!(
        "training {:.0} images/s; demo took {:.0} s; model in {}",
        r.images_per_sec,
        r.seconds,
        r.model_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
