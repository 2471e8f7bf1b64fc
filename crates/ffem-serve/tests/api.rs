//! The service's HTTP API in process (no socket): every route's answer checked against the
//! library (`FaceModel`, `ffem_eval`), the gallery's life cycle, concurrent requests batched,
//! and each kind of bad input answered with a 4xx JSON error while the service keeps serving.
//! The server runs with `--no-detect` here (each image is one face crop), so no weights are
//! needed; detection is tested with the face data in `crates/ffem/tests/serve.rs`.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ffem_eval::embedding::cosine;
use ffem_infer::face::FaceModel;
use ffem_infer::threshold::SavedThreshold;
use ffem_model::{ModelConfig, save_model};
use ffem_serve::{AppState, ServeConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An untrained 32 px, 16-d model (its embeddings still depend on the image) with a threshold.
fn model(dir: &Path) -> std::path::PathBuf {
    let cfg = ModelConfig::small(0.25, 16, 32);
    let device = burn::tensor::Device::flex();
    device.seed(5);
    let path = dir.join("model");
    save_model(&path, &cfg, &cfg.init(&device)).unwrap();
    SavedThreshold {
        set: "test".into(),
        threshold_cosine: 0.9,
        threshold_squared_l2: 0.2,
        accuracy: Some(1.0),
        flip: true,
    }
    .save(&path)
    .unwrap();
    path
}

fn state(dir: &Path, key: Option<&str>) -> Arc<AppState> {
    let mut cfg = ServeConfig::new(model(dir), dir.join("gallery.redb"));
    cfg.detector_weights = None;
    cfg.api_key = key.map(str::to_string);
    cfg.max_body_bytes = 1 << 20;
    ffem_serve::load(cfg).unwrap()
}

/// A synthetic face photo, PNG-encoded: distinct per `seed`.
fn photo(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 48, |x, y| {
        let v = (x * (3 + seed) + y * (5 + 2 * seed) + seed * 40) % 256;
        image::Rgb([v as u8, (255 - v) as u8, ((x * y + seed) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

const BOUNDARY: &str = "ffem-test-boundary";

fn multipart(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn send(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Value, String) {
    let response = ffem_serve::router(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn post_form(uri: &str, fields: &[(&str, &[u8])]) -> Request<Body> {
    Request::post(uri)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(multipart(fields)))
        .unwrap()
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The library's embedding of a whole image as one face (what `--no-detect` does).
fn library(dir: &Path, bytes: &[u8]) -> Vec<f32> {
    let m = FaceModel::load(&dir.join("model")).unwrap();
    m.embed_encoded(bytes, Some([0.0, 0.0, 48.0, 48.0]), None)
        .unwrap()
}

#[tokio::test]
async fn embed_verify_and_search_agree_with_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), None);
    let (a, b) = (photo(1), photo(2));

    let (status, v, text) = send(&s, post_form("/v1/embed", &[("image", &a)])).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(v["faces"].as_array().unwrap().len(), 1);
    let e = vector(&v["faces"][0]["embedding"]);
    let lib_a = library(dir.path(), &a);
    let diff = e
        .iter()
        .zip(&lib_a)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "service and library differ by {diff}");
    assert_eq!(vector(&v["faces"][0]["box"]), vec![0.0, 0.0, 48.0, 48.0]);

    let (status, v, text) = send(&s, post_form("/v1/verify", &[("a", &a), ("b", &b)])).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let sim = v["similarity"].as_f64().unwrap() as f32;
    let expected = cosine(&lib_a, &library(dir.path(), &b));
    assert!((sim - expected).abs() < 1e-5, "{sim} vs {expected}");
    assert_eq!(v["threshold"].as_f64().unwrap() as f32, 0.9);
    assert_eq!(v["same_person"].as_bool().unwrap(), sim >= 0.9);

    // Gallery: three identities of one photo each; the search ranks them as the library does.
    let photos: Vec<(String, Vec<u8>)> =
        (3..6).map(|i| (format!("person {i}"), photo(i))).collect();
    for (name, bytes) in &photos {
        let req = Request::post("/v1/identities")
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"name\": \"{name}\"}}")))
            .unwrap();
        assert_eq!(send(&s, req).await.0, StatusCode::CREATED);
        let uri = format!("/v1/identities/{}/faces", name.replace(' ', "%20"));
        let (status, v, text) = send(&s, post_form(&uri, &[("image", bytes)])).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert!(v["face_id"].as_u64().unwrap() >= 1);
    }
    let query = photo(7);
    let q = library(dir.path(), &query);
    let mut expected: Vec<(f32, &str)> = photos
        .iter()
        .map(|(n, p)| (cosine(&q, &library(dir.path(), p)), n.as_str()))
        .collect();
    expected.sort_by(|x, y| y.0.total_cmp(&x.0));
    let (status, v, text) = send(&s, post_form("/v1/search?k=2", &[("image", &query)])).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let matches = v["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 2);
    for (m, (score, name)) in matches.iter().zip(&expected) {
        assert_eq!(m["identity"].as_str().unwrap(), *name);
        assert!((m["score"].as_f64().unwrap() as f32 - score).abs() < 1e-5);
    }

    let (_, v, _) = send(
        &s,
        Request::get("/v1/identities").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(v["identities"].as_array().unwrap().len(), 3);
    let req = Request::delete("/v1/identities/person%203")
        .body(Body::empty())
        .unwrap();
    let (status, v, _) = send(&s, req).await;
    assert_eq!(
        (status, v["faces_removed"].as_u64()),
        (StatusCode::OK, Some(1))
    );

    let (status, _, text) = send(&s, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("ffem_requests_total{route=\"/v1/embed\",status=\"200\"} 1\n")
            && text.contains("ffem_gallery_faces 2\n")
            && text.contains("ffem_faces_embedded_total 7\n"),
        "{text}"
    );
    let (status, v, _) = send(
        &s,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The document is derived from the routed handlers: every API route, its bodies' schemas,
    // the key scheme.
    let mut paths: Vec<&str> = v["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/health",
            "/metrics",
            "/v1/embed",
            "/v1/identities",
            "/v1/identities/{name}",
            "/v1/identities/{name}/faces",
            "/v1/identities/{name}/faces/{id}",
            "/v1/search",
            "/v1/verify"
        ]
    );
    let verify = &v["paths"]["/v1/verify"]["post"];
    assert_eq!(
        verify["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"],
        "#/components/schemas/PairUpload"
    );
    assert!(verify["responses"]["422"].is_object() && verify["responses"]["200"].is_object());
    let verified = &v["components"]["schemas"]["Verified"]["properties"];
    for field in ["similarity", "threshold", "same_person", "a", "b"] {
        assert!(
            verified[field].is_object(),
            "Verified lacks {field}: {verified}"
        );
    }
    assert!(
        v["paths"]["/v1/identities"]["get"].is_object()
            && v["paths"]["/v1/identities"]["post"].is_object()
    );
    assert_eq!(
        v["components"]["securitySchemes"]["apiKey"]["name"],
        "x-api-key"
    );
    let (status, _, page) = send(&s, Request::get("/").body(Body::empty()).unwrap()).await;
    assert!(status == StatusCode::OK && page.contains("/v1/verify"));
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_answered_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig::new(model(dir.path()), dir.path().join("gallery.redb"));
    cfg.detector_weights = None;
    // A window long enough that requests queued while the first waits join its pass.
    cfg.max_batch = 16;
    cfg.batch_wait = std::time::Duration::from_millis(300);
    let s = ffem_serve::load(cfg).unwrap();
    let images: Vec<Vec<u8>> = (0..16).map(photo).collect();
    let requests = images.iter().cloned().map(|img| {
        let s = s.clone();
        async move {
            let (status, v, text) = send(&s, post_form("/v1/embed", &[("image", &img)])).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            vector(&v["faces"][0]["embedding"])
        }
    });
    let together = futures_join_all(requests).await;
    for (img, e) in images.iter().zip(&together) {
        let alone = library(dir.path(), img);
        let diff = e
            .iter()
            .zip(&alone)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5,
            "a batched answer differs from the image alone by {diff}"
        );
    }
    let (_, _, metrics) = send(&s, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))[name.len() + 1..]
            .parse()
            .unwrap()
    };
    assert_eq!(counter("ffem_faces_embedded_total"), 16);
    let passes = counter("ffem_forward_passes_total");
    assert!(
        passes < 16,
        "16 concurrent faces took {passes} forward passes: none was shared"
    );
}

/// Runs futures concurrently on the test's runtime (tasks, so they interleave).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A PNG claiming `w` x `h` pixels with almost no pixel data: a decompression bomb's first bytes.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let chunk = |png: &mut Vec<u8>, kind_and_data: &[u8]| {
        png.extend_from_slice(&((kind_and_data.len() - 4) as u32).to_be_bytes());
        png.extend_from_slice(kind_and_data);
        png.extend_from_slice(&crc32(kind_and_data).to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, &ihdr);
    // An IDAT holding an empty zlib stream, then IEND: a well-formed start, almost no pixels.
    chunk(
        &mut png,
        b"IDAT\x78\x01\x01\x00\x00\xff\xff\x00\x00\x00\x01",
    );
    chunk(&mut png, b"IEND");
    png
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), None);
    let jpeg = {
        let img = image::RgbImage::from_pixel(64, 64, image::Rgb([90, 100, 110]));
        ffem_data::imageops::encode_jpeg(&img, 90).unwrap()
    };
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "empty body",
            Request::post("/v1/embed")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            "not an image",
            post_form("/v1/embed", &[("image", b"hello, world")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not an image",
        ),
        (
            "truncated JPEG",
            post_form("/v1/embed", &[("image", &jpeg[..jpeg.len() / 2])]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "truncated JPEG",
        ),
        (
            "a 20,000 x 20,000 PNG",
            post_form("/v1/embed", &[("image", &png_header(20_000, 20_000))]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "20000 x 20000",
        ),
        (
            "wrong content type",
            Request::post("/v1/embed")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            "missing field",
            post_form("/v1/verify", &[("a", &photo(1))]),
            StatusCode::BAD_REQUEST,
            "missing field `b`",
        ),
        (
            "unexpected field",
            post_form("/v1/embed", &[("picture", &photo(1))]),
            StatusCode::BAD_REQUEST,
            "unexpected field `picture`",
        ),
        (
            "unknown identity",
            post_form("/v1/identities/nobody/faces", &[("image", &photo(1))]),
            StatusCode::NOT_FOUND,
            "no identity `nobody`",
        ),
        (
            "a name with path characters",
            Request::post("/v1/identities")
                .header("content-type", "application/json")
                .body(Body::from("{\"name\": \"../etc/passwd\"}"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "no path characters",
        ),
        (
            "k out of range",
            post_form("/v1/search?k=0", &[("image", &photo(1))]),
            StatusCode::BAD_REQUEST,
            "1 to 100",
        ),
        (
            "a body over the limit",
            post_form("/v1/embed", &[("image", &vec![0u8; 2 << 20])]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            "an unknown route",
            Request::get("/v2/anything").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "openapi",
        ),
    ];
    for (what, req, want, says) in cases {
        let (status, v, text) = send(&s, req).await;
        assert_eq!(status, want, "{what}: {text}");
        if !says.is_empty() {
            let error = v["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {text}"));
            assert!(error.contains(says), "{what}: {error}");
        }
    }
    // Still serving.
    let (status, _, _) = send(&s, post_form("/v1/embed", &[("image", &photo(3))])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_api_key_guards_everything_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), Some("s3cret"));
    let get = |uri: &str, key: Option<&str>| {
        let mut r = Request::get(uri);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.body(Body::empty()).unwrap()
    };
    assert_eq!(send(&s, get("/health", None)).await.0, StatusCode::OK);
    let (status, v, _) = send(&s, get("/v1/identities", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(v["error"].as_str().unwrap().contains("API key"));
    assert_eq!(
        send(&s, get("/v1/identities", Some("wrong"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&s, get("/v1/identities", Some("s3cret"))).await.0,
        StatusCode::OK
    );
    let bearer = Request::get("/metrics")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&s, bearer).await.0, StatusCode::OK);
    assert_eq!(
        send(&s, get("/?api_key=s3cret", None)).await.0,
        StatusCode::OK
    );
}
