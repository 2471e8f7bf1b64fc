//! The frame of the OpenAPI document served at `/openapi.json`: title, description and the API-key
//! scheme. The paths and schemas come from the handlers' `#[utoipa::path]` attributes as the
//! router registers them (`crate::router`).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ffem face service",
        description = "Face embedding, verification, search and a gallery. Images are uploaded as multipart/form-data; faces are detected (MTCNN) and aligned unless the server runs with --no-detect."
    ),
    modifiers(&KeyScheme),
    security(("apiKey" = []))
)]
struct Frame;

/// Adds the `x-api-key` header scheme every route but `/health` uses when the server has a key.
struct KeyScheme;

impl Modify for KeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "apiKey",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
            );
    }
}

/// The document before any path is added.
pub(crate) fn frame() -> utoipa::openapi::OpenApi {
    Frame::openapi()
}
