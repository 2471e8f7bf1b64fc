//! `ffem ablate` end to end on tiny synthetic data: two variants, label noise, the report, and a
//! resumed study that keeps what is done.

use std::path::Path;

use ffem_data::ImageList;
use ffem_infer::Embedder;
use ffem_infer::evalset::{PairSet, embed_set, set_distances};
use ffem_train::ablate::{AblateOptions, AblationConfig, ablate};

/// Accuracy and AUC of the 10-fold protocol over the study's 40 held-out pairs (drawn as the
/// study draws them, seed 0), and leave-one-out Recall@1 over the held-out images.
fn rescore(model_dir: &Path, test: &Path) -> (f64, f64, f64) {
    let device = burn::tensor::Device::flex();
    let (cfg, model) = ffem_model::load_model(model_dir, &device).unwrap();
    let list = ImageList::load(&test.join("image_list.json")).unwrap();
    let set = PairSet::from_list("held_out", &test.join("images"), &list, 40, 0).unwrap();
    let align = cfg.align;
    let emb = embed_set(
        &Embedder::new(&model, cfg, &device),
        &set.faces,
        align,
        true,
        false,
    )
    .unwrap();
    let issame: Vec<bool> = set.pairs.iter().map(|p| p.2).collect();
    let report = ffem_eval::verification::evaluate(&set_distances(&set, &emb), &issame, 10, None);
    let labels: Vec<i64> = list.entries.iter().map(|e| e.label as i64).collect();
    let recall = ffem_eval::identify(&emb.embeddings, &labels, emb.dim, 1).recall_at_1;
    (report.accuracy, report.auc, recall)
}

fn study(dir: &Path, noise: f64) -> String {
    format!(
        r#"
out_dir = "{out}"
label_noise = {noise}
noise_seed = 3
[data]
align = true
lists = [{{ root = "{{data}}/train/images", json = "{{data}}/train/image_list.json" }}]
[eval]
identification = true
lists = [{{ name = "held_out", root = "{{data}}/test/images", json = "{{data}}/test/image_list.json", pairs = 40 }}]
[base]
batch_size = 8
epochs = 2
image_size = 32
embedding_dim = 16
backbone = "mobilenet_v3_small"
width = 0.25
optimizer = "adam"
lr = 0.01
checkpoint_every = 0
workers = 2
seed = 1
[[variants]]
name = "softmax"
loss = "l2softmax"
scale = 16.0
[[variants]]
name = "arc"
loss = "arcface"
scale = 16.0
[[variants]]
name = "arc_after_softmax"
init_from = "softmax"
loss = "arcface"
scale = 16.0
"#,
        out = dir.join("study").display()
    )
}

#[test]
fn a_study_trains_every_variant_reports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ffem_data::synth::generate(&data.join("train"), 0, 8, 6, 48, 3).unwrap();
    ffem_data::synth::generate(&data.join("test"), 1_000, 6, 5, 48, 3).unwrap();
    let cfg_path = dir.path().join("study.toml");
    std::fs::write(&cfg_path, study(dir.path(), 0.25)).unwrap();
    let cfg = AblationConfig::load(&cfg_path).unwrap();
    // A noisy study without --out goes beside out_dir, named by its noise.
    let out = dir.path().join("study-noise0.25");
    let opts = AblateOptions {
        data_root: Some(data.clone()),
        only: vec!["softmax".into()],
        ..AblateOptions::default()
    };

    // --only: one variant now, the report names the other as not yet run.
    let report = ablate(&cfg_path, &cfg, &opts).unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("| softmax | l2softmax |"), "{text}");
    assert!(
        text.contains("Not yet run: arc, arc_after_softmax."),
        "{text}"
    );
    assert!(text.contains("label noise 25%"), "{text}");
    let noise: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data/noise.json")).unwrap())
            .unwrap();
    assert_eq!(
        noise["flipped"].as_array().unwrap().len(),
        12,
        "25% of 48 labels"
    );

    // The whole study: the finished variant is kept as it was, the other trains.
    let first = std::fs::read_to_string(out.join("variants/softmax/result.json")).unwrap();
    let report = ablate(
        &cfg_path,
        &cfg,
        &AblateOptions {
            only: vec![],
            ..opts.clone()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("variants/softmax/result.json")).unwrap(),
        first
    );
    assert!(
        text.contains("| arc | arcface |") && !text.contains("Not yet run"),
        "{text}"
    );
    let result: ffem_train::ablate::VariantResult = serde_json::from_str(
        &std::fs::read_to_string(out.join("variants/arc/result.json")).unwrap(),
    )
    .unwrap();
    let held_out = &result.sets[0];
    assert_eq!(held_out.set, "held_out");
    // The recorded scores are the saved model's on the held-out pairs, scored again here from
    // the model directory, the list and the 10-fold protocol.
    let (accuracy, auc, recall) = rescore(&out.join("variants/arc/model"), &data.join("test"));
    assert!(
        (held_out.accuracy - accuracy).abs() < 1e-9 && (held_out.auc - auc).abs() < 1e-9,
        "recorded {} / {}, rescored {accuracy} / {auc}",
        held_out.accuracy,
        held_out.auc
    );
    assert_eq!(result.recall_at_1, Some(recall));
    assert!(
        text.contains(&format!("| arc | arcface | {:.2}% ", 100.0 * accuracy)),
        "the report shows the accuracy {accuracy}: {text}"
    );
    // 48 images (8 identities x 6), batches of 8, 2 epochs.
    assert_eq!(result.steps, 12);
    assert!(result.images_per_sec > 0.0);
    for chart in ["roc.png", "curves.png"] {
        assert!(
            std::fs::metadata(out.join(chart)).unwrap().len() > 1000,
            "{chart}"
        );
    }

    // A variant edited after it ran is refused, not reported with its old numbers.
    let edited = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("scale = 16.0\n[[variants]]", "scale = 20.0\n[[variants]]");
    std::fs::write(&cfg_path, edited).unwrap();
    let changed = AblationConfig::load(&cfg_path).unwrap();
    let err = ablate(&cfg_path, &changed, &opts).unwrap_err().to_string();
    assert!(
        err.contains("variant `softmax` changed since it ran"),
        "{err}"
    );

    // init_from must name a variant listed before.
    let backwards =
        study(dir.path(), 0.25).replace("init_from = \"softmax\"", "init_from = \"later\"");
    std::fs::write(&cfg_path, backwards).unwrap();
    let err = ablate(&cfg_path, &AblationConfig::load(&cfg_path).unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must name a variant listed before it"),
        "{err}"
    );

    // The same folder with other noise is refused rather than mixed.
    std::fs::write(&cfg_path, study(dir.path(), 0.1)).unwrap();
    let other = AblationConfig::load(&cfg_path).unwrap();
    let same_out = AblateOptions {
        out: Some(out.clone()),
        ..opts
    };
    let err = ablate(&cfg_path, &other, &same_out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds a study of other data"), "{err}");
}
