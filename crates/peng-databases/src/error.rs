//! The one error of this crate: a kind (which the server maps to a status), a message that says
//! what went wrong and where, and details (a file's problems, one a line).

peng_core::kinded_error! {
    pub struct Error;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<peng_state::StateError> for Error {
    fn from(e: peng_state::StateError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

impl From<peng_db::DbError> for Error {
    fn from(e: peng_db::DbError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}
