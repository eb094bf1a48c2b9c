//! Read-your-writes. A write's answer carries its stream sequence as a consistency token;
//! a read that sends it back (header `Consistency-Token`, or query parameter
//! `consistency_token`) is answered only once the projection has reached that sequence.
//!
//! The wait is on the projector's `NOTIFY` of each committed checkpoint, not a polling loop,
//! and is bounded: past [`MAX_WAIT`] the answer is 503 `not-yet-projected` with
//! `Retry-After`. The checkpoint lives in the same database as the rows, so the same token
//! works against a streaming read replica, which replays both together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use geoledger_common::point::FieldError;
use geoledger_common::problem::Problem;
use geoledger_common::projection::{CHECKPOINT_CHANNEL, CONSISTENCY_TOKEN};

/// Longest a read waits for the projection to reach its token.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// The query parameter that carries the token; the header is [`CONSISTENCY_TOKEN`].
pub(crate) const QUERY_PARAMETER: &str = "consistency_token";

/// The projection's checkpoint as last announced, shared by all requests.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    seen: watch::Receiver<u64>,
    /// Whether the announcements are being heard right now: between a successful `LISTEN`
    /// (and the read that follows it) and the loss of that connection.
    listening: Arc<AtomicBool>,
}

impl Checkpoint {
    /// Starts following the projector's announcements on `pool`'s database.
    pub(crate) fn follow(pool: PgPool) -> Self {
        let (tx, seen) = watch::channel(0);
        let listening = Arc::new(AtomicBool::new(false));
        tokio::spawn(listen(pool, tx, listening.clone()));
        Self { seen, listening }
    }

    /// The latest announced checkpoint, while announcements are being heard; `None` while
    /// the listening connection is down, when the last value heard may be long out of date.
    pub(crate) fn current(&self) -> Option<u64> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| *self.seen.borrow())
    }

    /// Waits until the checkpoint reaches `token`; `Err` with the checkpoint on time-out.
    async fn reached(&self, token: u64) -> Result<(), u64> {
        let mut rx = self.seen.clone();
        match tokio::time::timeout(MAX_WAIT, rx.wait_for(|seen| *seen >= token)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(*self.seen.borrow()),
        }
    }
}

async fn listen(pool: PgPool, tx: watch::Sender<u64>, listening: Arc<AtomicBool>) {
    let advance = |seen: u64| {
        tx.send_if_modified(|current| {
            let newer = seen > *current;
            if newer {
                *current = seen;
            }
            newer
        });
    };
    loop {
        let Ok(mut listener) = PgListener::connect_with(&pool).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if listener.listen(CHECKPOINT_CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            // Read after LISTEN (and after each reconnection), so an announcement made while
            // not listening is not missed.
            match read_checkpoint(&pool).await {
                Ok(seen) => {
                    advance(seen);
                    listening.store(true, Ordering::Release);
                }
                Err(_) => listening.store(false, Ordering::Release),
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Ok(seen) = notification.payload().parse() {
                            advance(seen);
                        }
                    }
                    // The connection dropped; the next call reconnects and listens again.
                    Ok(None) => {
                        listening.store(false, Ordering::Release);
                        break;
                    }
                    Err(_) => {
                        listening.store(false, Ordering::Release);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }
}

async fn read_checkpoint(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let checkpoint = super::caching::read_checkpoint(pool).await?;
    Ok(u64::try_from(checkpoint.seq).unwrap_or(0))
}

/// Holds a request back until the projection has reached its consistency token, if it has
/// one. The query parameter is taken off the URI, so routes never see it.
pub(crate) async fn wait_for_token(
    State(checkpoint): State<Checkpoint>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match take_token(&mut request) {
        Ok(token) => token,
        Err(field) => {
            return Problem::validation(vec![FieldError {
                field: field.to_owned(),
                reason: "must be a stream sequence from a write's answer".to_owned(),
            }])
            .into_response();
        }
    };
    if let Some(token) = token
        && let Err(current) = checkpoint.reached(token).await
    {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-yet-projected",
            "The read model has not reached this write yet",
        )
        .detail(format!(
            "waited {} s for sequence {token}; the projection is at {current}",
            MAX_WAIT.as_secs()
        ))
        .extension("checkpoint", current)
        .extension("consistency_token", token)
        .retry_after(1)
        .into_response();
    }
    next.run(request).await
}

/// The request's token, or the name of the header or parameter that holds a bad one.
fn take_token(request: &mut Request) -> Result<Option<u64>, &'static str> {
    let invalid = |source: &'static str| source;
    let mut token = None;
    if let Some(value) = request.headers().get(CONSISTENCY_TOKEN) {
        let parsed = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        token = Some(parsed.ok_or_else(|| invalid("Consistency-Token"))?);
    }
    let uri = request.uri().clone();
    if let Some(query) = uri.query() {
        let (ours, rest): (Vec<&str>, Vec<&str>) = query
            .split('&')
            .partition(|pair| pair.split('=').next() == Some(QUERY_PARAMETER));
        if let Some(pair) = ours.last() {
            let value = pair.split_once('=').map_or("", |(_, v)| v);
            let parsed = value.parse::<u64>().map_err(|_| invalid(QUERY_PARAMETER))?;
            token = Some(token.map_or(parsed, |t: u64| t.max(parsed)));
            *request.uri_mut() = without_query_parameter(&uri, &rest.join("&"))
                .map_err(|()| invalid(QUERY_PARAMETER))?;
        }
    }
    Ok(token)
}

fn without_query_parameter(uri: &Uri, rest: &str) -> Result<Uri, ()> {
    let path_and_query = if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{rest}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| ())?);
    Uri::from_parts(parts).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(uri: &str) -> Request {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn the_query_parameter_is_taken_off_and_the_rest_kept() {
        let mut r = request("/points?limit=5&consistency_token=42&f=geojson");
        assert_eq!(take_token(&mut r).unwrap(), Some(42));
        assert_eq!(r.uri().to_string(), "/points?limit=5&f=geojson");
        let mut r = request("/points/x?consistency_token=7");
        assert_eq!(take_token(&mut r).unwrap(), Some(7));
        assert_eq!(r.uri().to_string(), "/points/x");
    }

    #[test]
    fn a_token_that_is_not_a_sequence_is_refused() {
        assert!(take_token(&mut request("/points?consistency_token=abc")).is_err());
        let mut r = Request::builder()
            .uri("/points")
            .header("consistency-token", "-1")
            .body(Body::empty())
            .unwrap();
        assert!(take_token(&mut r).is_err());
        assert_eq!(take_token(&mut request("/points?limit=1")).unwrap(), None);
    }
}
