//! The JSON API's extractors: axum's `Json`, `Query` and `Path`, whose rejections are turned
//! into the API's JSON error body (axum answers them in plain text), keeping axum's status.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

fn rejected(status: axum::http::StatusCode, text: String) -> ApiError {
    let kind = if status == axum::http::StatusCode::NOT_FOUND {
        peng_core::ErrorKind::NotFound
    } else {
        peng_core::ErrorKind::Invalid
    };
    let mut e = ApiError::new(kind, text.to_lowercase());
    e.status = Some(status);
    e
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejected(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejected(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejected(r.status(), r.body_text())
    }
}
