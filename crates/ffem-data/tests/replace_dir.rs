//! Replacing a directory (checkpoints, packs) leaves a complete directory under the target name
//! whichever point a crash stops it at, and the staging a crash leaves is cleaned up later.

use std::path::Path;

use ffem_data::atomic::{
    Interruption, recover_dir, remove_stale_staging, replace_dir, replace_dir_interrupted,
    temp_path,
};

fn make(dir: &Path, content: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("state.json"), content).unwrap();
    std::fs::write(dir.join("weights.bin"), content.repeat(100)).unwrap();
}

fn content(dir: &Path) -> String {
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("weights.bin")).unwrap(),
        state.repeat(100),
        "a mixed directory"
    );
    state
}

#[test]
fn a_crash_at_any_point_leaves_a_complete_target() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("checkpoint");
    let staged = temp_path(&target);

    // Stopped before the swap (staging written, nothing renamed): the old checkpoint, and stale
    // staging that the next writer removes.
    make(&target, "old");
    make(&staged, "new");
    assert_eq!(content(&target), "old");
    assert_eq!(remove_stale_staging(&target).unwrap(), 1);
    assert!(!staged.exists());

    // Stopped after the swap: already the new checkpoint; the old one waits to be removed.
    make(&staged, "new");
    replace_dir_interrupted(&staged, &target, Interruption::AfterSwap).unwrap();
    assert_eq!(content(&target), "new");
    assert!(remove_stale_staging(&target).unwrap() >= 1);
    assert_eq!(
        content(&target),
        "new",
        "cleaning up never touches the target"
    );

    // Run to the end: the new one in place, nothing left beside it.
    make(&staged, "newer");
    replace_dir(&staged, &target).unwrap();
    assert_eq!(content(&target), "newer");
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("checkpoint")]);

    // No target yet: a plain rename.
    let fresh = root.path().join("pack");
    let fresh_staged = temp_path(&fresh);
    make(&fresh_staged, "first");
    replace_dir(&fresh_staged, &fresh).unwrap();
    assert_eq!(content(&fresh), "first");
}

#[test]
fn the_two_rename_fallback_is_recoverable_at_every_crash_point() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("checkpoint");
    let staged = temp_path(&target);

    // Between the renames there is no target: recovery brings the old one back, and the staged
    // new one is stale staging.
    make(&target, "old");
    make(&staged, "new");
    replace_dir_interrupted(&staged, &target, Interruption::BetweenRenames).unwrap();
    assert!(!target.exists(), "the crash window this test is about");
    assert!(recover_dir(&target).unwrap());
    assert_eq!(content(&target), "old");
    assert!(
        !recover_dir(&target).unwrap(),
        "nothing to do once it is back"
    );
    assert_eq!(remove_stale_staging(&target).unwrap(), 1);

    // After both renames: the new one is in place, the old one is stale and recovery leaves
    // the target alone.
    make(&staged, "new");
    replace_dir_interrupted(&staged, &target, Interruption::AfterRenames).unwrap();
    assert!(!recover_dir(&target).unwrap());
    assert_eq!(content(&target), "new");
    assert_eq!(remove_stale_staging(&target).unwrap(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("checkpoint")]);
}

#[test]
fn stale_staging_of_other_targets_is_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("checkpoint");
    make(&root.path().join(".checkpoint.tmp-123"), "stale");
    make(&root.path().join(".checkpoint_b.tmp-123"), "other target's");
    make(&root.path().join("model"), "model");
    assert_eq!(remove_stale_staging(&a).unwrap(), 1);
    assert!(root.path().join(".checkpoint_b.tmp-123").exists());
    assert!(root.path().join("model").exists());
}
