#![warn(missing_docs)]
//! `ffem serve`: a face service over HTTP. Images go in as `multipart/form-data`, answers come
//! back as JSON:
//!
//! - `POST /v1/embed` (field `image`): every face found, with box, landmarks and embedding;
//! - `POST /v1/verify` (fields `a`, `b`): the largest face of each, their cosine similarity and
//!   the decision at the model's saved threshold;
//! - `POST /v1/search?k=5` (field `image`): the gallery identities most like its largest face;
//! - gallery: `GET/POST /v1/identities`, `DELETE /v1/identities/{name}`,
//!   `POST /v1/identities/{name}/faces` (field `image`), `DELETE /v1/identities/{name}/faces/{id}`;
//! - `GET /health`, `GET /metrics` (Prometheus), `GET /openapi.json`, `GET /` (a web page).
//!
//! Faces are found by MTCNN and aligned as training did (`--no-detect`: each image is one face,
//! already cropped). Concurrent requests are batched for the network ([`batcher`]); the gallery
//! is a redb database ([`gallery`]). Limits on body size, image size, faces per image and request
//! time, and an optional API key, keep it serving under bad input.

mod answers;
pub mod batcher;
pub mod gallery;
pub mod metrics;
mod openapi;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ffem_detect::Mtcnn;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use utoipa::{IntoParams, ToSchema};

use crate::answers::{
    AddedFace, ApiAnswers, CreatedIdentity, DeletedIdentity, Embedded, ErrorAnswer, FaceJson,
    Health, Identities, ImageUpload, PairUpload, RemovedFace, Searched, Verified,
};
use crate::batcher::{BatchError, Batcher};
use crate::gallery::{FaceRecord, Gallery, GalleryError};
use crate::metrics::Metrics;

/// Everything `ffem serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The model directory.
    pub model_dir: PathBuf,
    /// The gallery database file (created if missing).
    pub gallery: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Required on every route but `/health` (header `x-api-key`, `Authorization: Bearer`, or
    /// `?api_key=` for the web page).
    pub api_key: Option<String>,
    /// MTCNN weights; `None` treats each image as one face crop (`--no-detect`).
    pub detector_weights: Option<PathBuf>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest image side accepted.
    pub max_image_side: u32,
    /// Most faces embedded per image (`/v1/embed`); the largest are kept.
    pub max_faces: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Most faces per forward pass.
    pub max_batch: usize,
    /// How long a forward pass waits for its batch to fill.
    pub batch_wait: Duration,
    /// Gallery size from which search is approximate (HNSW) instead of exact.
    pub ann_above: usize,
}

impl ServeConfig {
    /// The defaults for a model and a gallery file.
    pub fn new(model_dir: PathBuf, gallery: PathBuf) -> Self {
        ServeConfig {
            model_dir,
            gallery,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            detector_weights: Some(ffem_detect::default_weights_dir()),
            max_body_bytes: 20 << 20,
            max_image_side: 8192,
            max_faces: 32,
            request_timeout: Duration::from_secs(30),
            max_batch: 32,
            batch_wait: Duration::from_millis(5),
            ann_above: 1_000_000,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model did not load.
    #[error("model {0}")]
    Model(String),
    /// The detector's weights did not load (the message names the fetch script).
    #[error(transparent)]
    Detector(#[from] ffem_detect::DetectError),
    /// The gallery did not open.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// Binding or serving failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// What every handler shares.
pub struct AppState {
    config: ServeConfig,
    batcher: Batcher,
    model: ffem_model::ModelConfig,
    detector: Option<Arc<Mtcnn>>,
    gallery: Gallery,
    threshold: Option<f32>,
    metrics: Metrics,
}

/// Loads the model, the detector and the gallery: the service's state.
pub fn load(config: ServeConfig) -> Result<Arc<AppState>, ServeError> {
    let (batcher, model) = Batcher::start(&config.model_dir, config.max_batch, config.batch_wait)
        .map_err(ServeError::Model)?;
    let detector = match &config.detector_weights {
        Some(dir) => Some(Arc::new(Mtcnn::load(dir)?)),
        None => None,
    };
    let threshold = ffem_infer::threshold::SavedThreshold::load(&config.model_dir)
        .map_err(|e| ServeError::Model(e.to_string()))?
        .map(|t| t.threshold_cosine);
    let gallery = Gallery::open_with_ann(&config.gallery, model.embedding_dim, config.ann_above)?;
    Ok(Arc::new(AppState {
        config,
        batcher,
        model,
        detector,
        gallery,
        threshold,
        metrics: Metrics::default(),
    }))
}

/// The HTTP routes over `state`. The API routes are registered through utoipa's router, which
/// takes each handler's `#[utoipa::path]` (path, method, parameters, bodies, answers) into the
/// OpenAPI document served at `/openapi.json`: a route cannot be served without being described,
/// and its description sits on its handler.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, document) = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::frame())
        .routes(utoipa_axum::routes!(health))
        .routes(utoipa_axum::routes!(metrics))
        .routes(utoipa_axum::routes!(embed))
        .routes(utoipa_axum::routes!(verify))
        .routes(utoipa_axum::routes!(search))
        .routes(utoipa_axum::routes!(list_identities, create_identity))
        .routes(utoipa_axum::routes!(delete_identity))
        .routes(utoipa_axum::routes!(add_face))
        .routes(utoipa_axum::routes!(remove_face))
        .split_for_parts();
    let document: Arc<serde_json::Value> =
        Arc::new(serde_json::to_value(document).expect("the OpenAPI document is plain JSON"));
    api.route("/", get(page))
        .route(
            "/openapi.json",
            get(move || async move { Json(serde_json::Value::clone(&document)) }),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Serves until Ctrl-C.
pub async fn serve(state: Arc<AppState>) -> Result<(), ServeError> {
    let addr = state.config.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io { addr, source })?;
    // The bound address: with port 0 the system picks one, and scripts read it from this line.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        "serving {} on http://{bound} ({} faces in the gallery)",
        state.config.model_dir.display(),
        state.gallery.len()
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| ServeError::Io { addr, source })
}

/// A JSON error: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorAnswer {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        let status = match e {
            GalleryError::UnknownIdentity(_) | GalleryError::UnknownFace(..) => {
                StatusCode::NOT_FOUND
            }
            GalleryError::Exists(_) => StatusCode::CONFLICT,
            GalleryError::BadName(_) => StatusCode::BAD_REQUEST,
            GalleryError::Db(_) | GalleryError::Dimension { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// API key, request timeout and metrics, around every route.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = if let Some(key) = &state.config.api_key
        && route != "/health"
        && !has_key(request.headers(), request.uri().query(), key)
    {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key: send it as `x-api-key` or `Authorization: Bearer KEY`",
        )
        .into_response()
    } else {
        match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request took longer than {} s",
                    state.config.request_timeout.as_secs_f64()
                ),
            )
            .into_response(),
        }
    };
    state.metrics.request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn has_key(headers: &HeaderMap, query: Option<&str>, key: &str) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key") == Some(key)
        || header(header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
            == Some(key)
        || query.is_some_and(|q| q.split('&').any(|kv| kv == format!("api_key={key}")))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

#[utoipa::path(get, path = "/health", security(()),
    responses((status = OK, description = "the service is up (no API key needed)", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/metrics",
    responses((status = OK, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(state.gallery.len(), state.batcher.forward_passes()),
    )
}

/// A multipart body, or why it is not one (answered as a JSON 400, not axum's plain text).
type Upload = Result<Multipart, axum::extract::multipart::MultipartRejection>;

/// The named file fields of a multipart body; anything else is an error naming the field.
async fn files(form: Upload, wanted: &[&str]) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut form = form.map_err(|e| {
        ApiError::bad(format!(
            "send multipart/form-data with {}: {e}",
            wanted.join(", ")
        ))
    })?;
    let mut found: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    loop {
        let field = form.next_field().await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("not a readable multipart/form-data body: {}", e.body_text()),
            )
        })?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_string();
        let Some(slot) = wanted.iter().position(|w| *w == name) else {
            return Err(ApiError::bad(format!(
                "unexpected field `{name}`: send {}",
                wanted.join(", ")
            )));
        };
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(e.status(), format!("field `{name}`: {}", e.body_text())))?;
        found[slot] = Some(bytes.to_vec());
    }
    found
        .into_iter()
        .zip(wanted)
        .map(|(f, name)| match f {
            Some(b) if !b.is_empty() => Ok(b),
            Some(_) => Err(ApiError::bad(format!("field `{name}` is empty"))),
            None => Err(ApiError::bad(format!(
                "missing field `{name}` (multipart/form-data with {})",
                wanted.join(", ")
            ))),
        })
        .collect()
}

/// A face found in an upload, prepared for the network.
struct Found {
    face_box: [f32; 4],
    landmarks: Option<[f32; 10]>,
    score: Option<f32>,
    image: Vec<f32>,
}

/// The faces of an uploaded image, largest first (at most `limit`); an image without a face, or
/// one that is not a usable image, is a 422 naming `what`.
fn find_faces(
    state: &AppState,
    bytes: &[u8],
    what: &str,
    limit: usize,
) -> Result<Vec<Found>, ApiError> {
    let unusable =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{what}: {m}"));
    // The header alone gives the size, so an oversized image is refused before decoding; a header
    // that does not parse gets the decoder's own diagnosis (truncated JPEG, unknown format, ...).
    let (w, h) = ffem_data::imageops::upright_dimensions(bytes).ok_or_else(|| {
        unusable(
            ffem_data::imageops::decode_rgb(bytes)
                .err()
                .unwrap_or_else(|| "not an image (JPEG, PNG, WebP, BMP, PNM or TIFF)".into()),
        )
    })?;
    let side = state.config.max_image_side;
    if w > side || h > side {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: the image is {w} x {h}; the largest side accepted is {side}"),
        ));
    }
    // One decode for all the photo's faces.
    let img = ffem_data::imageops::decode_rgb(bytes).map_err(unusable)?;
    let found = |face_box: [f32; 4], landmarks: Option<[f32; 10]>, score: Option<f32>| {
        let image = ffem_infer::embed::prepare_decoded(
            &img,
            Some(face_box),
            landmarks,
            state.model.image_size,
            state.model.align,
        )
        .map_err(unusable)?;
        Ok(Found {
            face_box,
            landmarks,
            score,
            image,
        })
    };
    match &state.detector {
        None => Ok(vec![found([0.0, 0.0, w as f32, h as f32], None, None)?]),
        Some(detector) => {
            let mut faces = detector.faces_in(&img).map_err(unusable)?;
            faces.truncate(limit);
            faces
                .into_iter()
                .map(|f| found(f.bbox, Some(f.landmarks), Some(f.score)))
                .collect()
        }
    }
}

/// Finds faces off the async threads (decoding and detection are CPU work).
async fn faces_of(
    state: &Arc<AppState>,
    bytes: Vec<u8>,
    what: &'static str,
    limit: usize,
) -> Result<Vec<Found>, ApiError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || find_faces(&s, &bytes, what, limit))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn embed_found(state: &AppState, found: &mut [Found]) -> Result<Vec<Vec<f32>>, ApiError> {
    let images = found
        .iter_mut()
        .map(|f| std::mem::take(&mut f.image))
        .collect();
    let out = state.batcher.embed(images).await?;
    state.metrics.faces_embedded(out.len() as u64);
    Ok(out)
}

impl FaceJson {
    /// The face as found, with its embedding when the answer carries one.
    pub(crate) fn of(f: &Found, embedding: Option<Vec<f32>>) -> Self {
        FaceJson {
            face_box: f.face_box,
            landmarks: f.landmarks,
            score: f.score,
            embedding,
        }
    }
}

#[utoipa::path(post, path = "/v1/embed", request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = OK, description = "every face of the image, largest first, with its unit embedding", body = Embedded), ApiAnswers))]
async fn embed(
    State(state): State<Arc<AppState>>,
    form: Upload,
) -> Result<Json<Embedded>, ApiError> {
    let [image] = <[Vec<u8>; 1]>::try_from(files(form, &["image"]).await?).expect("one field");
    let mut found = faces_of(&state, image, "image", state.config.max_faces).await?;
    let embeddings = embed_found(&state, &mut found).await?;
    let faces: Vec<FaceJson> = found
        .iter()
        .zip(embeddings)
        .map(|(f, e)| FaceJson::of(f, Some(e)))
        .collect();
    Ok(Json(Embedded {
        faces,
        dim: state.batcher.dim(),
    }))
}

#[utoipa::path(post, path = "/v1/verify", request_body(content = PairUpload, content_type = "multipart/form-data"),
    responses((status = OK, description = "the largest faces of a and b compared", body = Verified), ApiAnswers))]
async fn verify(
    State(state): State<Arc<AppState>>,
    form: Upload,
) -> Result<Json<Verified>, ApiError> {
    let [a, b] = <[Vec<u8>; 2]>::try_from(files(form, &["a", "b"]).await?).expect("two fields");
    let (fa, fb) = tokio::join!(faces_of(&state, a, "a", 1), faces_of(&state, b, "b", 1));
    let (mut fa, mut fb) = (fa?, fb?);
    let (ea, eb) = tokio::join!(embed_found(&state, &mut fa), embed_found(&state, &mut fb));
    let (ea, eb) = (ea?, eb?);
    let similarity = ffem_eval::embedding::cosine(&ea[0], &eb[0]);
    Ok(Json(Verified {
        similarity,
        threshold: state.threshold,
        same_person: state.threshold.map(|t| similarity >= t),
        a: FaceJson::of(&fa[0], None),
        b: FaceJson::of(&fb[0], None),
    }))
}

/// `/v1/search`'s query.
#[derive(Deserialize, IntoParams)]
struct SearchQuery {
    /// Identities to return, 1 to 100 (default 5).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
}

#[utoipa::path(post, path = "/v1/search", params(SearchQuery),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = OK, description = "the gallery identities most like the image's largest face", body = Searched), ApiAnswers))]
async fn search(
    State(state): State<Arc<AppState>>,
    Query(q): Query<SearchQuery>,
    form: Upload,
) -> Result<Json<Searched>, ApiError> {
    let k = q.k.unwrap_or(5);
    if !(1..=100).contains(&k) {
        return Err(ApiError::bad(format!("k = {k}: ask for 1 to 100 results")));
    }
    let [image] = <[Vec<u8>; 1]>::try_from(files(form, &["image"]).await?).expect("one field");
    let mut found = faces_of(&state, image, "image", 1).await?;
    let e = embed_found(&state, &mut found).await?;
    let matches = state.gallery.search(&e[0], k);
    Ok(Json(Searched {
        face: FaceJson::of(&found[0], None),
        matches,
        threshold: state.threshold,
    }))
}

/// `POST /v1/identities`'s body.
#[derive(Deserialize, ToSchema)]
struct NewIdentity {
    /// 1 to 64 letters, digits, spaces, '.', '_' or '-', not starting with '.'.
    #[schema(pattern = r"^[\w .-]{1,64}$")]
    name: String,
}

#[utoipa::path(get, path = "/v1/identities",
    responses((status = OK, description = "every identity with its face count", body = Identities), ApiAnswers))]
async fn list_identities(State(state): State<Arc<AppState>>) -> Result<Json<Identities>, ApiError> {
    Ok(Json(Identities {
        identities: state.gallery.identities()?,
    }))
}

#[utoipa::path(post, path = "/v1/identities", request_body = NewIdentity,
    responses((status = CREATED, description = "the identity was created", body = CreatedIdentity), ApiAnswers))]
async fn create_identity(
    State(state): State<Arc<AppState>>,
    body: Result<Json<NewIdentity>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedIdentity>), ApiError> {
    let Json(new) =
        body.map_err(|e| ApiError::bad(format!("send JSON {{\"name\": \"...\"}}: {e}")))?;
    state.gallery.create_identity(&new.name)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedIdentity { name: new.name }),
    ))
}

#[utoipa::path(delete, path = "/v1/identities/{name}", params(("name" = String, Path, description = "the identity")),
    responses((status = OK, description = "the identity and its faces were deleted", body = DeletedIdentity), ApiAnswers))]
async fn delete_identity(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<DeletedIdentity>, ApiError> {
    let faces_removed = state.gallery.delete_identity(&name)?;
    Ok(Json(DeletedIdentity {
        deleted: name,
        faces_removed,
    }))
}

#[utoipa::path(post, path = "/v1/identities/{name}/faces", params(("name" = String, Path, description = "the identity")),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = CREATED, description = "the image's largest face was enrolled", body = AddedFace), ApiAnswers))]
async fn add_face(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    form: Upload,
) -> Result<(StatusCode, Json<AddedFace>), ApiError> {
    let [image] = <[Vec<u8>; 1]>::try_from(files(form, &["image"]).await?).expect("one field");
    let sha: [u8; 32] = Sha256::digest(&image).into();
    let mut found = faces_of(&state, image, "image", 1).await?;
    let e = embed_found(&state, &mut found).await?;
    let face = FaceRecord {
        identity: name.clone(),
        image_sha256: sha,
        face_box: found[0].face_box,
        embedding: e.into_iter().next().expect("one face"),
    };
    let s = state.clone();
    let id = tokio::task::spawn_blocking(move || s.gallery.add_face(face))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(AddedFace {
            identity: name,
            face_id: id,
            face: FaceJson::of(&found[0], None),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/identities/{name}/faces/{id}",
    params(("name" = String, Path, description = "the identity"), ("id" = u64, Path, description = "the face")),
    responses((status = OK, description = "the face was removed", body = RemovedFace), ApiAnswers))]
async fn remove_face(
    State(state): State<Arc<AppState>>,
    UrlPath((name, id)): UrlPath<(String, u64)>,
) -> Result<Json<RemovedFace>, ApiError> {
    state.gallery.remove_face(&name, id)?;
    Ok(Json(RemovedFace {
        identity: name,
        removed_face_id: id,
    }))
}
