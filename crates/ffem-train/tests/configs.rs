//! Configurations survive the trip through a run directory: the demo's and the seed's two steps,
//! written as a resolved `config.toml` (what `--resume` reads), load back equal.

use std::path::Path;

use ffem_train::TrainConfig;
use ffem_train::demo::demo_config;

#[test]
fn resolved_configs_round_trip_through_toml() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
    let mut configs = vec![demo_config(Path::new("data/demo/train"))];
    for name in ["step1_l2softmax.toml", "step2_arcface.toml"] {
        configs.push(TrainConfig::load(Some(&Path::new(dir).join(name)), &[]).unwrap());
    }
    let tmp = tempfile::tempdir().unwrap();
    for (i, cfg) in configs.iter().enumerate() {
        let path = tmp.path().join(format!("c{i}.toml"));
        std::fs::write(&path, cfg.to_toml()).unwrap();
        let back = TrainConfig::load(Some(&path), &[])
            .unwrap_or_else(|e| panic!("config {i}: {e}\n{}", cfg.to_toml()));
        assert_eq!(&back, cfg, "config {i}");
    }
}
