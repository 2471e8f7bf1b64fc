//! A run killed while its checkpoint is being replaced resumes, whatever the point of the kill:
//! each crash window of `ffem_data::atomic::replace_dir` is reproduced on a real run directory
//! (old checkpoint at step 4, new one at step 5), then `--resume` must accept what is left and
//! finish with the uninterrupted run's loss curve.

use std::path::Path;

mod common;

use common::{SERIAL, dataset, tiny_config};
use ffem_data::atomic::{Interruption, replace_dir_interrupted, temp_path};
use ffem_train::metrics::read_metrics;
use ffem_train::{TrainOptions, train};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn checkpoint_step(dir: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

fn stop_after(n: u64) -> TrainOptions {
    TrainOptions {
        stop_after: Some(n),
        ..Default::default()
    }
}

#[test]
fn a_kill_at_any_point_of_the_checkpoint_replacement_leaves_a_resumable_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let cfg = tiny_config(&records);
    let full = dir.path().join("full");
    assert_eq!(
        train(&cfg, &full, false, &TrainOptions::default())
            .unwrap()
            .steps,
        12
    );
    let reference = read_metrics(&full.join("metrics.csv")).unwrap();

    // The two checkpoints a replacement moves between: step 4 (old) and step 5 (new).
    let base = dir.path().join("base");
    train(&cfg, &base, false, &stop_after(4)).unwrap();
    let old = dir.path().join("old-checkpoint");
    copy_dir(&base.join("checkpoint"), &old);
    train(&cfg, &base, true, &stop_after(1)).unwrap();
    let new = dir.path().join("new-checkpoint");
    copy_dir(&base.join("checkpoint"), &new);
    assert_eq!((checkpoint_step(&old), checkpoint_step(&new)), (4, 5));

    let cases = [
        (None, 4),
        (Some(Interruption::AfterSwap), 5),
        (Some(Interruption::BetweenRenames), 4),
        (Some(Interruption::AfterRenames), 5),
    ];
    for (at, resumes_from) in cases {
        let run = dir.path().join(format!("run-{at:?}"));
        copy_dir(&base, &run);
        std::fs::remove_dir_all(run.join("checkpoint")).unwrap();
        copy_dir(&old, &run.join("checkpoint"));
        // A writer (another pid) staged the new checkpoint beside the old one...
        let staged = temp_path(&run.join("checkpoint")).with_file_name(".checkpoint.tmp-999999");
        copy_dir(&new, &staged);
        match at {
            // ... and was killed before renaming anything, with a half-written file in staging.
            None => std::fs::write(staged.join("optim.bpk"), b"half").unwrap(),
            // ... and was killed at this point of the replacement.
            Some(point) => {
                replace_dir_interrupted(&staged, &run.join("checkpoint"), point).unwrap()
            }
        }
        // What the kill left under the checkpoint's name, or (between the two renames) nothing
        // there and the old checkpoint parked beside it.
        let left = if at == Some(Interruption::BetweenRenames) {
            assert!(!run.join("checkpoint").exists());
            let parked = std::fs::read_dir(&run)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(".old"))
                .expect("the old checkpoint parked beside");
            checkpoint_step(&parked)
        } else {
            checkpoint_step(&run.join("checkpoint"))
        };
        assert_eq!(left, resumes_from, "{at:?}");
        let s = train(&cfg, &run, true, &TrainOptions::default())
            .unwrap_or_else(|e| panic!("{at:?}: --resume refused what the kill left: {e}"));
        assert_eq!(s.steps, 12, "{at:?}");
        let rows = read_metrics(&run.join("metrics.csv")).unwrap();
        assert_eq!(rows.len(), 12, "{at:?}");
        for (x, y) in reference.iter().zip(&rows) {
            assert_eq!(
                (x.step, x.loss),
                (y.step, y.loss),
                "{at:?} (resumed from step {resumes_from})"
            );
        }
        let leftovers: Vec<String> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".checkpoint"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{at:?}: staging left behind: {leftovers:?}"
        );
    }
}
