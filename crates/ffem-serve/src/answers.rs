//! What the API answers and takes, as types: each handler returns one of these, and the OpenAPI
//! document's schemas are derived from the same types, so the two cannot disagree.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::gallery::{IdentitySummary, Match};

/// One face as the API answers it.
#[derive(Serialize, ToSchema)]
pub(crate) struct FaceJson {
    /// Left, top, right, bottom, in the image's pixels.
    #[serde(rename = "box")]
    pub(crate) face_box: [f32; 4],
    /// Eyes, nose, mouth corners: (x, y) five times; none with `--no-detect`.
    pub(crate) landmarks: Option<[f32; 10]>,
    /// The detector's confidence; none with `--no-detect`.
    pub(crate) score: Option<f32>,
    /// The unit embedding (`/v1/embed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) embedding: Option<Vec<f32>>,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    pub(crate) status: &'static str,
}

/// `POST /v1/embed`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Embedded {
    /// Every face found, largest first, each with its embedding.
    pub(crate) faces: Vec<FaceJson>,
    /// The embedding's width.
    pub(crate) dim: usize,
}

/// `POST /v1/verify`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Verified {
    /// Cosine similarity of the two faces' embeddings.
    pub(crate) similarity: f32,
    /// The model's saved decision threshold (cosine), if it has one.
    pub(crate) threshold: Option<f32>,
    /// `similarity >= threshold`; none without a threshold.
    pub(crate) same_person: Option<bool>,
    /// The largest face of `a`.
    pub(crate) a: FaceJson,
    /// The largest face of `b`.
    pub(crate) b: FaceJson,
}

/// `POST /v1/search`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Searched {
    /// The query image's largest face.
    pub(crate) face: FaceJson,
    /// The most similar identities, best first, each with its best face.
    pub(crate) matches: Vec<Match>,
    /// The model's saved decision threshold (cosine), if it has one.
    pub(crate) threshold: Option<f32>,
}

/// `GET /v1/identities`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Identities {
    /// Every identity by name, with its face count.
    pub(crate) identities: Vec<IdentitySummary>,
}

/// `POST /v1/identities`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedIdentity {
    /// The new identity.
    pub(crate) name: String,
}

/// `DELETE /v1/identities/{name}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedIdentity {
    /// The identity deleted.
    pub(crate) deleted: String,
    /// How many of its faces went with it.
    pub(crate) faces_removed: usize,
}

/// `POST /v1/identities/{name}/faces`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AddedFace {
    /// The identity enrolled under.
    pub(crate) identity: String,
    /// The new face's id (for `DELETE .../faces/{id}`).
    pub(crate) face_id: u64,
    /// The face enrolled: the image's largest.
    pub(crate) face: FaceJson,
}

/// `DELETE /v1/identities/{name}/faces/{id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RemovedFace {
    /// The identity.
    pub(crate) identity: String,
    /// The face removed.
    pub(crate) removed_face_id: u64,
}

/// Every error: a sentence that says what was wrong and what to do.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorAnswer {
    /// The message.
    pub(crate) error: String,
}

/// A multipart upload of one image.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ImageUpload {
    /// The image file (JPEG, PNG, WebP, BMP, PNM, TIFF).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// A multipart upload of two images to compare.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct PairUpload {
    /// The first image file.
    #[schema(value_type = String, format = Binary)]
    a: Vec<u8>,
    /// The second image file.
    #[schema(value_type = String, format = Binary)]
    b: Vec<u8>,
}

/// The error answers every API route can give, each a JSON [`ErrorAnswer`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum ApiAnswers {
    /// A malformed request.
    #[response(
        status = 400,
        description = "malformed request (missing field, not multipart, bad name)"
    )]
    BadRequest(ErrorAnswer),
    /// No or a wrong key.
    #[response(status = 401, description = "missing or wrong API key")]
    Unauthorized(ErrorAnswer),
    /// No such identity or face.
    #[response(status = 404, description = "no such identity or face")]
    NotFound(ErrorAnswer),
    /// The identity exists.
    #[response(status = 409, description = "the identity exists already")]
    Conflict(ErrorAnswer),
    /// Too big.
    #[response(status = 413, description = "body or image too large")]
    TooLarge(ErrorAnswer),
    /// Not an image, or no face.
    #[response(status = 422, description = "not an image, or no face in it")]
    Unprocessable(ErrorAnswer),
    /// Busy or timed out.
    #[response(status = 503, description = "busy or timed out; retry")]
    Unavailable(ErrorAnswer),
}
