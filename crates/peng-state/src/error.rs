use peng_core::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("team '{0}' already exists")]
    TeamExists(String),
    #[error("team '{0}' does not exist")]
    NoSuchTeam(String),
    #[error("state database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
}

impl StateError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::TeamExists(_) => ErrorKind::Conflict,
            StateError::NoSuchTeam(_) => ErrorKind::NotFound,
            StateError::Db(_) | StateError::Migrate(_) => ErrorKind::Unavailable,
            StateError::Corrupt(_) => ErrorKind::Internal,
        }
    }
}
