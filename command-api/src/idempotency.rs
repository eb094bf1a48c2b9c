//! Idempotency keys that outlive JetStream's duplicate window.
//!
//! The stream's de-duplication forgets a `Nats-Msg-Id` after its duplicate window (two
//! minutes by default), yet clients retry after timeouts, restarts and outages that last
//! longer. Each key used on `POST /point` is therefore claimed in a JetStream key-value
//! bucket whose entries expire after a documented time (24 hours by default). Claiming uses
//! the bucket's create-if-absent, so two instances racing on one key cannot both publish.
//! The read model is never consulted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A claim older than this without a sequence belongs to a request that died between
/// claiming and publishing; a retry may take it over.
const STALE_CLAIM: Duration = Duration::from_secs(30);

/// What a key stands for: the write it was first used with and, once stored, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub(crate) point_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) data: serde_json::Value,
    /// The stream sequence of the stored event; `None` while the publish is in flight.
    pub(crate) sequence: Option<u64>,
    /// The point's version after the write, once stored.
    #[serde(default)]
    pub(crate) version: Option<u64>,
    pub(crate) claimed_at: DateTime<Utc>,
}

impl Claim {
    /// Whether a pending claim was abandoned rather than still in flight.
    pub(crate) fn is_stale(&self) -> bool {
        self.sequence.is_none()
            && (Utc::now() - self.claimed_at)
                .to_std()
                .is_ok_and(|age| age > STALE_CLAIM)
    }
}

/// What claiming a key found.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// The key was free and is now ours, at this revision.
    New(u64),
    /// The key was used before; here is what for, and the entry's revision.
    Existing(Claim, u64),
}

/// Why the bucket could not be used; the request answers 503.
#[derive(Debug, thiserror::Error)]
#[error("the idempotency store is unavailable: {0}")]
pub(crate) struct StoreUnavailable(pub(crate) String);

/// The key-value bucket, declared in the background at start-up.
#[derive(Clone)]
pub(crate) struct IdempotencyStore {
    bucket: String,
    ttl: Duration,
    replicas: usize,
    store: Arc<OnceLock<kv::Store>>,
}

impl IdempotencyStore {
    pub(crate) fn new(stream: &str, ttl: Duration, replicas: usize) -> Self {
        Self {
            bucket: format!("{stream}_IDEMPOTENCY"),
            ttl,
            replicas,
            store: Arc::new(OnceLock::new()),
        }
    }

    /// Creates the bucket or brings it to the configured expiry.
    pub(crate) async fn declare(&self, js: &jetstream::Context) -> Result<(), StoreUnavailable> {
        let store = js
            .create_or_update_key_value(kv::Config {
                bucket: self.bucket.clone(),
                description: "geoledger idempotency keys".to_owned(),
                history: 1,
                max_age: self.ttl,
                storage: jetstream::stream::StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreUnavailable(e.to_string()))?;
        let _ = self.store.set(store);
        Ok(())
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.store.get().is_some()
    }

    fn store(&self) -> Result<&kv::Store, StoreUnavailable> {
        self.store
            .get()
            .ok_or_else(|| StoreUnavailable("bucket not declared yet".to_owned()))
    }

    /// Claims `key` for `claim`, or returns what the key was first used for.
    pub(crate) async fn claim(
        &self,
        key: &str,
        claim: &Claim,
    ) -> Result<Claimed, StoreUnavailable> {
        let store = self.store()?;
        let entry_key = entry_key(key);
        match store.create(&entry_key, encode(claim)).await {
            Ok(revision) => Ok(Claimed::New(revision)),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = store
                    .entry(&entry_key)
                    .await
                    .map_err(|e| StoreUnavailable(e.to_string()))?
                    .filter(|e| e.operation == kv::Operation::Put)
                    // Released between our create and this read: the caller retries.
                    .ok_or_else(|| StoreUnavailable("the key changed meanwhile".to_owned()))?;
                let first = serde_json::from_slice(&entry.value)
                    .map_err(|e| StoreUnavailable(format!("unreadable claim: {e}")))?;
                Ok(Claimed::Existing(first, entry.revision))
            }
            Err(error) => Err(StoreUnavailable(error.to_string())),
        }
    }

    /// Replaces the claim at `revision` (completing it, or taking over a stale one); fails if
    /// someone else changed it first.
    pub(crate) async fn update(
        &self,
        key: &str,
        claim: &Claim,
        revision: u64,
    ) -> Result<u64, StoreUnavailable> {
        self.store()?
            .update(entry_key(key), encode(claim), revision)
            .await
            .map_err(|e| StoreUnavailable(e.to_string()))
    }

    /// Gives a key back after its write failed, so that a retry can claim it again.
    pub(crate) async fn release(&self, key: &str) {
        let released = match self.store() {
            Ok(store) => store
                .delete(entry_key(key))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = released {
            tracing::warn!(
                error.message = %error,
                "idempotency key not released; a retry will wait until the claim is stale"
            );
        }
    }
}

/// Keys are visible ASCII of any shape; bucket keys allow fewer characters, so the key is
/// stored hex-encoded.
fn entry_key(key: &str) -> String {
    geoledger_common::hex::encode(key.as_bytes())
}

fn encode(claim: &Claim) -> bytes::Bytes {
    serde_json::to_vec(claim)
        .expect("a claim serialises")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_visible_ascii_key_becomes_a_valid_bucket_key() {
        let key = entry_key("order #7/ä?");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(entry_key("A"), "41");
    }

    #[test]
    fn only_an_old_claim_without_a_sequence_is_stale() {
        let mut claim = Claim {
            point_id: Uuid::now_v7(),
            event_type: "PointCreated".to_owned(),
            data: serde_json::json!({}),
            sequence: None,
            version: None,
            claimed_at: Utc::now(),
        };
        assert!(!claim.is_stale());
        claim.claimed_at -= chrono::Duration::minutes(5);
        assert!(claim.is_stale());
        claim.sequence = Some(7);
        assert!(!claim.is_stale());
    }
}
