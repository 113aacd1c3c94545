//! The one place where an `ErrorKind` becomes an HTTP status and an error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use peng_api::ErrorBody;
use peng_core::ErrorKind;

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

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
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

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn code_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::Invalid => "invalid",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
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
        (
            self.status.unwrap_or_else(|| status_of(self.kind)),
            Json(body),
        )
            .into_response()
    }
}

macro_rules! from_kinded {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                ApiError::new(e.kind(), e.to_string())
            }
        }
    )*};
}

from_kinded!(
    peng_state::StateError,
    peng_provision::ProvisionError,
    peng_logs::LogError,
    peng_monitor::MonitorError,
    peng_tsdb::TsdbError,
    peng_logs::gelf::GelfError,
);

impl From<peng_spec::Diagnostics> for ApiError {
    fn from(d: peng_spec::Diagnostics) -> Self {
        let details: Vec<String> = d.0.iter().map(|x| x.to_string()).collect();
        let n = details.len();
        ApiError::invalid(format!(
            "the service file has {n} error{}",
            if n == 1 { "" } else { "s" }
        ))
        .with_details(details)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
