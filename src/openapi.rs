//! `GET /openapi.json`: the OpenAPI 3 document of the API, generated from
//! the route handlers' annotations and the request and response types.

use actix_web::HttpResponse;
use utoipa::OpenApi;

/// The API document.
#[derive(Debug, OpenApi)]
#[openapi(info(
    title = "ordercore",
    description = "Actor-based order core: the HTTP API of API.md"
))]
pub struct ApiDoc;

/// Serves the document.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
