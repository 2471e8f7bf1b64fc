//! Runs the demo with the sizes given: `demo_quick DIR TRAIN_IDS TEST_IDS PER_ID [key=value...]`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let opts = ffem_train::demo::DemoOptions {
        dir: a[1].clone().into(),
        train_identities: a[2].parse().unwrap(),
        test_identities: a[3].parse().unwrap(),
        per_identity: a[4].parse().unwrap(),
        seed: 0,
        overrides: a[5..].to_vec(),
        progress: false,
    };
    let r = ffem_train::demo::run_demo(&opts).unwrap();
    println!("{}", r.verification.table("demo"));
    println!(
        "train {:.1} img/s, total {:.1} s",
        r.images_per_sec, r.seconds
    );
}
