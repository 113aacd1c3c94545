use peng_core::ErrorKind;

/// What went wrong with a database operation. Messages name the server, account or file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A MariaDB tool is missing or printed something unexpected.
    #[error("{0}")]
    Tools(String),
    /// The server refused or failed a statement.
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server did not come up, stopped, or is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// The request breaks a rule (bad name, unknown version, …).
    #[error("{0}")]
    Invalid(String),
    /// A backup failed its verification.
    #[error("{0}")]
    Verification(String),
}

impl DbError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::Invalid(_) => ErrorKind::Invalid,
            DbError::Unavailable(_) | DbError::Sql { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    pub fn sql(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Sql { context, source }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Io { context, source }
    }
}
