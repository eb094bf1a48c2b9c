//! The client-visible outcomes of a failed read, each rendered as a problem document, and the
//! mapping from database errors onto them.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};

use geoledger_common::point::FieldError;
use geoledger_common::problem::{Problem, cause_chain};

/// Why a read was not answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A query parameter broke a rule; one entry per bad parameter.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// Nothing exists at this address; the text says what was looked for.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database cannot answer right now; the client may retry.
    #[error("{reason}")]
    Unavailable {
        /// What the client is told; fixed text, never the driver's message.
        reason: &'static str,
        /// What the driver reported, if anything (a timeout has no cause).
        #[source]
        source: Option<sqlx::Error>,
    },
    /// Anything nobody planned for.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

/// The result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The database took longer than the caller was willing to wait.
    pub(crate) fn database_timeout() -> Self {
        Self::Unavailable {
            reason: "the database did not answer in time",
            source: None,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// Sorts a driver error into "retry later" and "bug". Only the read model's own queries
    /// pass through here, so a missing table means the projector has not migrated yet.
    fn from(error: sqlx::Error) -> Self {
        match unavailable(&error) {
            Some(reason) => Self::Unavailable {
                reason,
                source: Some(error),
            },
            None => Self::Internal(Box::new(error)),
        }
    }
}

impl From<Arc<sqlx::Error>> for ApiError {
    /// The same for an error shared by the readers of one cached page, who all waited on the
    /// one read that failed.
    fn from(error: Arc<sqlx::Error>) -> Self {
        match Arc::try_unwrap(error) {
            Ok(error) => error.into(),
            Err(shared) => match unavailable(&shared) {
                Some(reason) => Self::Unavailable {
                    reason,
                    source: None,
                },
                None => Self::Internal(Box::new(SharedError(shared))),
            },
        }
    }
}

/// A driver error several requests got from one read.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SharedError(Arc<sqlx::Error>);

/// Why the database cannot answer now, if the error says it is a matter of time.
fn unavailable(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => Some("the database did not answer in time"),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => {
            Some("the database connection failed")
        }
        sqlx::Error::Database(db) => db.code().and_then(|code| unavailable_reason(&code)),
        _ => None,
    }
}

/// The SQLSTATEs that say "not now" rather than "wrong query", per PostgreSQL's
/// errcodes appendix: <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
fn unavailable_reason(sqlstate: &str) -> Option<&'static str> {
    match sqlstate {
        "42P01" => Some("the read model has not been created yet"),
        "57014" => Some("the database did not answer in time"),
        // Class 08 is a broken connection; 57P01-57P03 a server shutting down or starting up;
        // 53300 a server with no connection slot left.
        s if s.starts_with("08") || s.starts_with("57P") || s == "53300" => {
            Some("the database connection failed")
        }
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Validation(errors) => Problem::validation(errors),
            Self::NotFound(detail) => Problem::not_found(detail),
            Self::Unavailable { reason, source } => {
                log_unavailable(reason, source.as_ref());
                Problem::unavailable(reason)
            }
            Self::Internal(error) => Problem::internal(error.as_ref()),
        };
        problem.into_response()
    }
}

/// Shortest time between two "database unavailable" warnings: during an outage every request
/// fails the same way, and one line a minute is enough to tell the operator.
const UNAVAILABLE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

fn log_unavailable(reason: &'static str, source: Option<&sqlx::Error>) {
    static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
    let cause = source.map(|e| cause_chain(e)).unwrap_or_default();
    let due = LAST_WARNING.lock().map_or(true, |mut last| {
        let due = last.is_none_or(|at| at.elapsed() >= UNAVAILABLE_WARNING_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    });
    if due {
        tracing::warn!(
            error.message = reason,
            error.cause_chain = ?cause,
            "reads unavailable; answering 503 until the database can serve them"
        );
    } else {
        tracing::debug!(error.message = reason, error.cause_chain = ?cause, "reads unavailable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_read_model_and_a_restarting_server_are_worth_a_retry() {
        for code in ["42P01", "08006", "57P01", "57P03", "53300", "57014"] {
            assert!(unavailable_reason(code).is_some(), "{code}");
        }
    }

    #[test]
    fn a_broken_query_is_an_internal_error() {
        for code in ["42601", "42703", "22P02"] {
            assert!(unavailable_reason(code).is_none(), "{code}");
        }
        assert!(matches!(
            ApiError::from(sqlx::Error::RowNotFound),
            ApiError::Internal(_)
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::Unavailable { .. }
        ));
    }
}
