//! The built-in demo end to end at a small size: synthetic identities, pack, train, verify on
//! held-out identities. (The full-size demo, `ffem train`, reaches >= 98%; see the README.)

#[test]
fn small_demo_runs_end_to_end_and_learns() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ffem_train::demo::DemoOptions {
        dir: dir.path().to_path_buf(),
        train_identities: 40,
        test_identities: 20,
        per_identity: 6,
        seed: 5,
        overrides: vec!["epochs=15".into(), "batch_size=16".into()],
        progress: false,
    };
    let r = ffem_train::demo::run_demo(&opts).unwrap();
    let v = &r.verification;
    assert_eq!(v.pairs, 2000);
    // Chance is 0.5; a few seconds of training on 240 images already separates held-out identities.
    assert!(
        v.accuracy > 0.7 && v.auc > 0.75,
        "{}",
        v.table("small demo")
    );
    assert!(r.model_dir.join("weights.bpk").exists());
    // `ffem verify` works on the demo's model right away: it carries the held-out threshold.
    let saved = ffem_infer::threshold::SavedThreshold::load(&r.model_dir)
        .unwrap()
        .expect("the demo saves its threshold");
    assert_eq!(saved.threshold_cosine, v.threshold_cosine as f32);
}
