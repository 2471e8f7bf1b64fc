//! The OpenAPI 3.0 description served at `/openapi.json`.

use serde_json::{Value, json};

fn upload(fields: &[&str]) -> Value {
    let props: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| (f.to_string(), json!({"type": "string", "format": "binary"})))
        .collect();
    json!({"required": true, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": fields, "properties": props}}}})
}

fn answers(ok: &str) -> Value {
    json!({
        "200": {"description": ok, "content": {"application/json": {}}},
        "400": {"description": "malformed request (missing field, not multipart, bad name)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "missing or wrong API key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "body or image too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "422": {"description": "not an image, or no face in it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "503": {"description": "busy or timed out; retry", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

/// The document.
pub fn document() -> Value {
    let name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "ffem face service", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Face embedding, verification, search and a gallery. Images are uploaded as multipart/form-data; faces are detected (MTCNN) and aligned unless the server runs with --no-detect."},
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/health": {"get": {"summary": "liveness (no API key needed)", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition"}}}},
            "/v1/embed": {"post": {"summary": "every face of an image with box, landmarks, score and unit embedding", "requestBody": upload(&["image"]), "responses": answers("faces")}},
            "/v1/verify": {"post": {"summary": "cosine similarity of the largest faces of a and b, and the decision at the model's threshold", "requestBody": upload(&["a", "b"]), "responses": answers("similarity, threshold, same_person")}},
            "/v1/search": {"post": {"summary": "gallery identities most similar to the image's largest face", "parameters": [{"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5}}], "requestBody": upload(&["image"]), "responses": answers("matches")}},
            "/v1/identities": {
                "get": {"summary": "identities with face counts", "responses": answers("identities")},
                "post": {"summary": "create an identity", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": "^[\\w .-]{1,64}$"}}}}}}, "responses": answers("created (201)")}
            },
            "/v1/identities/{name}": {"delete": {"summary": "delete an identity and its faces", "parameters": [name], "responses": answers("deleted")}},
            "/v1/identities/{name}/faces": {"post": {"summary": "enrol the largest face of an image", "parameters": [name], "requestBody": upload(&["image"]), "responses": answers("face_id (201)")}},
            "/v1/identities/{name}/faces/{id}": {"delete": {"summary": "remove one face", "parameters": [name, {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}], "responses": answers("removed")}}
        }
    })
}
