//! `AppError`: the error both transports send (server functions and the JSON API), safe
//! to show to users, with one HTTP status per kind ([`AppError::status_code`]). Internal
//! causes are logged once on the server where they are turned into `Internal`.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Someone else changed it first; reload and try again.
    #[error("{0}")]
    Conflict(String),
    /// The agent could not produce an insight; the message is safe to show.
    #[error("{0}")]
    Agent(String),
    /// Not signed in, or the credentials were refused.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Too many agent calls; the message says when to retry.
    #[error("{0}")]
    RateLimited(String),
    /// The request body is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("something went wrong on the server; it has been logged")]
    Internal,
    #[error("could not reach the server: {0}")]
    Transport(String),
}

impl AppError {
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::NotFound(_) => 404,
            AppError::BadRequest(_) => 400,
            AppError::Conflict(_) => 409,
            AppError::Agent(_) => 502,
            AppError::Unauthorized(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::RateLimited(_) => 429,
            AppError::TooLarge(_) => 413,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    /// A request the server function cannot read (arguments missing or malformed) is the
    /// caller's mistake, 400 as through REST; the rest are transport failures.
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(m)
            | ServerFnErrorErr::MissingArg(m)
            | ServerFnErrorErr::Deserialization(m) => AppError::BadRequest(m),
            other => AppError::Transport(other.to_string()),
        }
    }
}
