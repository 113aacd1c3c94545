//! The API's error: the application layer's error, answered with the status of its kind
//! (`crate::status`) and the JSON error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use peng_api::ErrorBody;
use peng_core::ErrorKind;

use crate::status::{code_of, status_of};

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Vec<String>,
    /// Set only where HTTP has a more precise status than the kind's (413).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Vec::new(),
            status: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A request body over its limit: 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            ..Self::new(ErrorKind::Invalid, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::error!(error = %self.message, "request failed");
        }
        let body = ErrorBody {
            code: code_of(self.kind).to_string(),
            error: self.message,
            details: self.details,
        };
        let status = self.status.unwrap_or_else(|| status_of(self.kind));
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // what is unavailable (a full log queue, a database starting) is so for moments
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<crate::ops::Error> for ApiError {
    fn from(e: crate::ops::Error) -> Self {
        ApiError {
            kind: e.kind,
            message: e.message,
            details: e.details,
            status: None,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
