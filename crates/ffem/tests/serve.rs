//! `ffem serve` as a process on the loopback: enrolments acknowledged before a `kill -9` are all
//! there after a restart and the database passes its integrity check; with the face data, the
//! service detects and aligns faces in photos and refuses a photo without one.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ffem_model::{ModelConfig, save_model};

/// An untrained 32 px, 16-d model.
fn model(dir: &Path) -> PathBuf {
    let cfg = ModelConfig {
        align: true,
        ..ModelConfig::small(0.25, 16, 32)
    };
    let device = burn::tensor::Device::flex();
    device.seed(5);
    let path = dir.join("model");
    save_model(&path, &cfg, &cfg.init(&device)).unwrap();
    path
}

/// A running `ffem serve` on a free loopback port.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(model: &Path, gallery: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ffem"))
            .args(["serve", model.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(["--gallery", gallery.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server says where it listens")
                .unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix: no shutdown code runs.
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request (ureq, no TLS); the status (4xx and 5xx included) and the body. A transport
/// error (the server gone, say) is a panic, which the kill test catches.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let response = match method {
        "GET" => agent.get(&url).call(),
        "DELETE" => agent.delete(&url).call(),
        "POST" => agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(body),
        other => panic!("no {other} requests in these tests"),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    // WebDriver screenshots come as base64 in JSON: allow more than ureq's default 10 MB.
    let text = response
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
    (status, text)
}

const BOUNDARY: &str = "ffem-serve-test";

fn upload(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn png(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 13) % 256) as u8,
            ((y * 5 + seed) % 256) as u8,
            128,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn acknowledged_enrolments_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let gallery = dir.path().join("gallery.redb");
    let mut server = Server::start(&model, &gallery, &["--no-detect"]);
    let (status, _) = http(
        server.addr,
        "POST",
        "/v1/identities",
        "application/json",
        br#"{"name": "ada"}"#,
    );
    assert_eq!(status, 201);

    // A stream of enrolments from another thread; the server is killed while it runs.
    let addr = server.addr;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let acks = acknowledged.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..400u32 {
            let body = upload(&[("image", &png(i))]);
            let result = std::panic::catch_unwind(|| {
                http(
                    addr,
                    "POST",
                    "/v1/identities/ada/faces",
                    &form_type(),
                    &body,
                )
            });
            match result {
                Ok((201, text)) => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    acks.lock().unwrap().push(v["face_id"].as_u64().unwrap());
                }
                _ => break, // the server is gone
            }
        }
    });
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 20 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    writer.join().unwrap();
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "only {} enrolments before the kill",
        acked.len()
    );

    assert!(ffem_serve::gallery::Gallery::check_integrity(&gallery).unwrap());
    let server = Server::start(&model, &gallery, &["--no-detect"]);
    let (status, text) = http(server.addr, "GET", "/v1/identities", "text/plain", b"");
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let faces = v["identities"][0]["faces"].as_u64().unwrap() as usize;
    // Every acknowledged enrolment is there; at most the one in flight at the kill is extra.
    assert!(
        faces >= acked.len() && faces <= acked.len() + 1,
        "{faces} faces after the restart, {} acknowledged",
        acked.len()
    );
    // Each acknowledged id is still removable, i.e. present.
    for id in acked.iter().rev().take(3) {
        let (status, text) = http(
            server.addr,
            "DELETE",
            &format!("/v1/identities/ada/faces/{id}"),
            "text/plain",
            b"",
        );
        assert_eq!(status, 200, "{text}");
    }
}

#[test]
#[ignore = "needs the face data and the MTCNN weights (scripts/fetch-mtcnn.sh): cargo test -- --include-ignored"]
fn the_service_detects_faces_in_photos_and_refuses_a_photo_without_one() {
    let data = ffem_testdata::require_shared_data();
    let weights = ffem_testdata::require_mtcnn_weights();
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let server = Server::start(
        &model,
        &dir.path().join("g.redb"),
        &["--detector-weights", weights.to_str().unwrap()],
    );
    let lfw = data.join("lfw/lfw-deepfunneled");
    let a = std::fs::read(lfw.join("Aaron_Peirsol/Aaron_Peirsol_0001.jpg")).unwrap();
    let b = std::fs::read(lfw.join("Aaron_Peirsol/Aaron_Peirsol_0002.jpg")).unwrap();
    let (status, text) = http(
        server.addr,
        "POST",
        "/v1/verify",
        &form_type(),
        &upload(&[("a", &a), ("b", &b)]),
    );
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The library with the detector computes the same similarity.
    let library = ffem_infer::face::FaceModel::load(&model)
        .unwrap()
        .with_detector(&weights)
        .unwrap();
    let (ea, eb) = (
        library.embed_encoded(&a, None, None).unwrap(),
        library.embed_encoded(&b, None, None).unwrap(),
    );
    let sim = ffem_eval::embedding::cosine(&ea, &eb);
    assert!(
        (v["similarity"].as_f64().unwrap() as f32 - sim).abs() < 1e-4,
        "{text} vs {sim}"
    );
    // The box is the face in the middle of the 250 x 250 deep-funneled photo.
    let b0: Vec<f64> = v["a"]["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        b0[0] > 40.0 && b0[2] < 210.0 && b0[1] > 40.0 && b0[3] < 230.0,
        "{b0:?}"
    );
    assert_eq!(v["a"]["landmarks"].as_array().unwrap().len(), 10);

    let blank = {
        let img = image::RgbImage::from_pixel(300, 300, image::Rgb([128, 128, 128]));
        ffem_data::imageops::encode_jpeg(&img, 90).unwrap()
    };
    let (status, text) = http(
        server.addr,
        "POST",
        "/v1/embed",
        &form_type(),
        &upload(&[("image", &blank)]),
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("no face found"), "{text}");
}

/// A W3C WebDriver call; the answer's `value`.
fn webdriver(
    driver: SocketAddr,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let body = if method == "GET" || method == "DELETE" {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = http(driver, method, path, "application/json", &body);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    assert!(status < 300, "WebDriver {method} {path}: {status} {text}");
    v["value"].clone()
}

#[test]
#[ignore = "needs chromium and chromium-driver (Debian packages), the face data and the MTCNN weights: cargo test -- --include-ignored"]
fn the_web_page_verifies_photos_in_a_real_browser() {
    let data = ffem_testdata::require_shared_data();
    let weights = ffem_testdata::require_mtcnn_weights();
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let lfw = data.join("lfw/lfw-deepfunneled");
    let photo = |key: &str| lfw.join(key);
    let same = (
        photo("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"),
        photo("Aaron_Peirsol/Aaron_Peirsol_0002.jpg"),
    );
    let different = (
        photo("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"),
        photo("Abdullah_Gul/Abdullah_Gul_0001.jpg"),
    );
    // The decision threshold half way between the two pairs' similarities (as the library
    // computes them): the page must then call the first pair the same person and the second not.
    let library = ffem_infer::face::FaceModel::load(&model)
        .unwrap()
        .with_detector(&weights)
        .unwrap();
    let sim = |(a, b): &(PathBuf, PathBuf)| {
        let e = |p: &PathBuf| {
            library
                .embed_encoded(&std::fs::read(p).unwrap(), None, None)
                .unwrap()
        };
        ffem_eval::embedding::cosine(&e(a), &e(b))
    };
    let (s_same, s_diff) = (sim(&same), sim(&different));
    assert!(
        s_same > s_diff,
        "this model ranks the pairs the other way: {s_same} vs {s_diff}"
    );
    ffem_infer::threshold::SavedThreshold {
        set: "browser test".into(),
        threshold_cosine: (s_same + s_diff) / 2.0,
        threshold_squared_l2: 2.0 - (s_same + s_diff),
        accuracy: Some(1.0),
        flip: true,
    }
    .save(&model)
    .unwrap();
    let server = Server::start(
        &model,
        &dir.path().join("g.redb"),
        &["--detector-weights", weights.to_str().unwrap()],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver_bin = std::env::var("FFEM_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let mut driver_process = Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{driver_bin}: {e}: install chromium-driver (apt-get install chromium chromium-driver)"));
    let driver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect(driver).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let session = webdriver(
        driver,
        "POST",
        "/session",
        serde_json::json!({
            "capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"]}}}
        }),
    );
    let sid = session["sessionId"].as_str().unwrap().to_string();
    let at = |p: &str| format!("/session/{sid}{p}");
    webdriver(
        driver,
        "POST",
        &at("/url"),
        serde_json::json!({"url": format!("http://{}/", server.addr)}),
    );
    let element = |css: &str| {
        let v = webdriver(
            driver,
            "POST",
            &at("/element"),
            serde_json::json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };
    let decide = |(a, b): &(PathBuf, PathBuf)| -> (String, f64) {
        for (input, file) in [("#a", a), ("#b", b)] {
            let e = element(input);
            webdriver(
                driver,
                "POST",
                &at(&format!("/element/{e}/value")),
                serde_json::json!({"text": file.display().to_string()}),
            );
        }
        let button = element("#compare");
        webdriver(
            driver,
            "POST",
            &at(&format!("/element/{button}/click")),
            serde_json::json!({}),
        );
        let verdict = element("#verdict");
        let started = Instant::now();
        loop {
            let text = webdriver(
                driver,
                "GET",
                &at(&format!("/element/{verdict}/text")),
                serde_json::Value::Null,
            );
            let text = text.as_str().unwrap_or("").to_string();
            if text.starts_with("similarity") || text.contains("rror") {
                let decision = webdriver(
                    driver,
                    "GET",
                    &at(&format!("/element/{verdict}/attribute/data-decision")),
                    serde_json::Value::Null,
                );
                let similarity = webdriver(
                    driver,
                    "GET",
                    &at(&format!("/element/{verdict}/attribute/data-similarity")),
                    serde_json::Value::Null,
                );
                return (
                    decision.as_str().unwrap_or("").to_string(),
                    similarity
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN),
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no verdict: `{text}`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (d_same, page_same) = decide(&same);
    let (d_diff, page_diff) = decide(&different);
    // The screenshot shows the last comparison: both faces outlined, the decision below.
    let png = webdriver(driver, "GET", &at("/screenshot"), serde_json::Value::Null);
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        png.as_str().unwrap(),
    )
    .unwrap();
    let shot = std::env::var_os("FFEM_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_page.png"));
    std::fs::write(&shot, &png).unwrap();
    let _ = http(driver, "DELETE", &at(""), "application/json", b"");
    let _ = driver_process.kill();
    let _ = driver_process.wait();
    assert_eq!(
        (d_same.as_str(), d_diff.as_str()),
        ("same", "different"),
        "page similarities {page_same} {page_diff}"
    );
    assert!((page_same - s_same as f64).abs() < 1e-4 && (page_diff - s_diff as f64).abs() < 1e-4);
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );
}

/// `ffem` with `args`; panics with its stderr when it fails.
fn ffem_ok(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ffem"))
        .args(args)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "ffem {args:?}: {out}{err}");
    out
}

/// `ffem import` of SFace into `out` with its input convention (raw BGR pixels) and `extra`.
fn import_sface(sface: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "import",
        sface.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--onnx-channels",
        "bgr",
        "--onnx-mean",
        "0",
        "--onnx-std",
        "1",
    ];
    args.extend_from_slice(extra);
    ffem_ok(&args)
}

/// The similarity `ffem verify` prints ("cosine similarity 0.7869 (threshold ...").
fn printed_similarity(out: &str) -> f32 {
    out.split("cosine similarity ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no similarity in: {out}"))
}

/// A good external model in the commands and the service: OpenCV's SFace imported once, then
/// `ffem verify`, `ffem search`, the library and `ffem serve` all take the directory and agree;
/// same and different people on LFW photos are told apart at the model's threshold.
#[test]
#[ignore = "needs the face data, the MTCNN weights (scripts/fetch-mtcnn.sh) and SFace (scripts/fetch-sface.sh): cargo test -- --include-ignored"]
fn an_imported_sface_verifies_searches_and_serves_real_photos() {
    let data = ffem_testdata::require_shared_data();
    let weights = ffem_testdata::require_mtcnn_weights();
    let sface = ffem_testdata::require_sface();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sface");
    // OpenCV's published cosine threshold for SFace (its face_recognition_sface README).
    let out = import_sface(&sface, &model, &["--threshold", "0.363"]);
    assert!(out.contains("output `fc1` [N, 128]"), "{out}");
    assert!(out.contains("saved threshold 0.3630"), "{out}");
    let lfw = data.join("lfw/lfw-deepfunneled");
    let photo = |p: &str| lfw.join(p).display().to_string();
    let (a, b, other) = (
        photo("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"),
        photo("Aaron_Peirsol/Aaron_Peirsol_0002.jpg"),
        photo("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
    );
    let w = weights.to_str().unwrap();
    let m = model.to_str().unwrap();
    let same = ffem_ok(&["verify", m, &a, &b, "--detector-weights", w]);
    assert!(same.contains("same person"), "{same}");
    let different = ffem_ok(&["verify", m, &a, &other, "--detector-weights", w]);
    assert!(different.contains("different people"), "{different}");

    // The library loads the same directory and computes the same similarity.
    let library = ffem_infer::face::FaceModel::load(&model)
        .unwrap()
        .with_detector(&weights)
        .unwrap();
    let embed = |p: &str| {
        library
            .embed_encoded(&std::fs::read(p).unwrap(), None, None)
            .unwrap()
    };
    let sim = ffem_eval::embedding::cosine(&embed(&a), &embed(&b));
    assert!(
        (sim - printed_similarity(&same)).abs() < 1e-3,
        "{sim} vs {same}"
    );
    assert_eq!(library.threshold, Some(0.363));

    // Search: a gallery of six photos of three people; the query's own person ranks first.
    let gallery = dir.path().join("gallery");
    for person in ["Aaron_Peirsol", "Abel_Pacheco", "Akhmed_Zakayev"] {
        std::fs::create_dir_all(gallery.join(person)).unwrap();
        for k in [1, 3] {
            let name = format!("{person}_000{k}.jpg");
            std::fs::copy(
                lfw.join(person).join(&name),
                gallery.join(person).join(&name),
            )
            .unwrap();
        }
    }
    let found = ffem_ok(&[
        "search",
        m,
        "--gallery",
        gallery.to_str().unwrap(),
        "--query",
        &b,
        "-k",
        "2",
        "--detector-weights",
        w,
    ]);
    let first = found
        .lines()
        .find(|l| l.contains(".jpg"))
        .unwrap_or_else(|| panic!("{found}"));
    assert!(first.contains("Aaron_Peirsol"), "{found}");

    // `--lfw` measures the threshold instead: on a small LFW (the first 20 same and 20
    // different pairs of the protocol's first fold, the real photos and list), saved as
    // `ffem eval` saves it, and verify then decides with it.
    let mini = dir.path().join("mini_lfw");
    std::fs::create_dir_all(&mini).unwrap();
    let pairs = std::fs::read_to_string(data.join("lfw/pairs.txt")).unwrap();
    let lines: Vec<&str> = pairs.lines().collect();
    let picked = [&lines[1..21], &lines[301..321]].concat();
    std::fs::write(
        mini.join("pairs.txt"),
        format!("1 20\n{}\n", picked.join("\n")),
    )
    .unwrap();
    std::os::unix::fs::symlink(&lfw, mini.join("lfw-deepfunneled")).unwrap();
    std::os::unix::fs::symlink(
        data.join("lfw/image_list.json"),
        mini.join("image_list.json"),
    )
    .unwrap();
    let measured = dir.path().join("sface_measured");
    let out = import_sface(&sface, &measured, &["--lfw", mini.to_str().unwrap()]);
    assert!(out.contains("lfw: 40 pairs (20 same)"), "{out}");
    let saved = ffem_infer::threshold::SavedThreshold::load(&measured)
        .unwrap()
        .expect("import --lfw saves a threshold");
    assert_eq!(saved.set, "lfw");
    assert!(saved.accuracy.is_some_and(|a| a >= 0.9), "{saved:?}");
    let decided = ffem_ok(&[
        "verify",
        measured.to_str().unwrap(),
        &a,
        &b,
        "--detector-weights",
        w,
    ]);
    assert!(decided.contains("same person"), "{decided}");

    // The same six photos grouped without their labels: every face of each photo (one holds a
    // second face in the background, left alone), three people, no two people mixed (pairwise
    // precision 1 against the folder names), and the list packs as it is.
    let people = dir.path().join("people.json");
    let grouped = ffem_ok(&[
        "cluster",
        m,
        gallery.to_str().unwrap(),
        "--output",
        people.to_str().unwrap(),
        "--score",
        "--detector-weights",
        w,
    ]);
    assert!(
        grouped.contains("7 faces -> 3 people (largest [2, 2, 2]), 1 unassigned"),
        "{grouped}"
    );
    assert!(grouped.contains("pairwise P 1.0000"), "{grouped}");
    assert!(people.with_extension("sheet.png").is_file());
    let packed = ffem_ok(&[
        "pack",
        "--json",
        people.to_str().unwrap(),
        "--root",
        "/",
        "--output",
        dir.path().join("people_records").to_str().unwrap(),
    ]);
    assert!(packed.contains("(3 identities)"), "{packed}");

    // The service runs the directory and decides at the saved threshold.
    let server = Server::start(
        &model,
        &dir.path().join("g.redb"),
        &["--detector-weights", w],
    );
    for (x, y, same_person) in [(&a, &b, true), (&a, &other, false)] {
        let (status, text) = http(
            server.addr,
            "POST",
            "/v1/verify",
            &form_type(),
            &upload(&[
                ("a", &std::fs::read(x).unwrap()),
                ("b", &std::fs::read(y).unwrap()),
            ]),
        );
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["same_person"].as_bool(), Some(same_person), "{text}");
        assert!(
            (v["threshold"].as_f64().unwrap() - 0.363).abs() < 1e-6,
            "{text}"
        );
    }
}

/// `ffem cluster` refuses what it cannot group, naming it, and writes nothing.
#[test]
fn cluster_refuses_empty_inputs_and_embeddings_without_a_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.path().join("people.json");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ffem"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "cluster",
        model.to_str().unwrap(),
        empty.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--threshold",
        "0.5",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no images found"),
        "{err}"
    );
    let o = run(&[
        "cluster",
        "--embeddings",
        dir.path().join("e.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("e.npy"), "{err}");
    assert!(!out.exists(), "a refused run writes nothing");
}
