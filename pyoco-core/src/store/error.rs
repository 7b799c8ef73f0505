//! [`StoreError`]: what a NATS operation's failure means to its caller — retry (the outcome
//! may change), give up, or a document problem. Whether a NATS error is transient is read
//! from the async-nats error kinds along its source chain, never from its message text.

use std::error::Error as StdError;
use std::sync::Arc;

use async_nats::jetstream::{consumer, context, kv, object_store, stream};

/// The source error of a NATS failure, kept for logs (`{:#}`/`source()`); shared, so the
/// error stays `Clone`.
pub type Source = Arc<dyn StdError + Send + Sync>;

/// A NATS operation failed. `transient` errors (timeouts, a lost connection, no responders)
/// may succeed when retried; the others will not.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("nats unavailable: {op}: {message}")]
    Unavailable {
        op: &'static str,
        message: String,
        #[source]
        source: Option<Source>,
    },
    #[error("{op}: {message}")]
    Failed {
        op: &'static str,
        message: String,
        #[source]
        source: Option<Source>,
    },
    #[error("key already exists: {key}")]
    AlreadyExists { key: String },
    #[error("document {key} is not valid JSON: {message}")]
    Corrupt { key: String, message: String },
    #[error("gave up on {key} after {attempts} conflicting writes")]
    Contended { key: String, attempts: u32 },
}

impl StoreError {
    /// Worth retrying: NAK (the worker) or 503 (the gateway) rather than give up.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Contended { .. }
        )
    }

    /// A NATS error, classified by its kind (see [`is_transient_nats`]), source kept.
    pub(crate) fn nats<E>(op: &'static str, err: E) -> StoreError
    where
        E: StdError + Send + Sync + 'static,
    {
        let message = err.to_string();
        StoreError::classified(op, message, Arc::new(err))
    }

    /// [`StoreError::nats`] with what the operation was about (a tag, a key) in the message.
    pub(crate) fn nats_about<E>(op: &'static str, about: &str, err: E) -> StoreError
    where
        E: StdError + Send + Sync + 'static,
    {
        let message = format!("{about}: {err}");
        StoreError::classified(op, message, Arc::new(err))
    }

    /// [`StoreError::nats`] for the boxed errors some async-nats calls return.
    pub(crate) fn nats_boxed(op: &'static str, err: async_nats::Error) -> StoreError {
        let message = err.to_string();
        StoreError::classified(op, message, Arc::from(err))
    }

    fn classified(op: &'static str, message: String, source: Source) -> StoreError {
        let transient = is_transient_nats(source.as_ref());
        let source = Some(source);
        if transient {
            StoreError::Unavailable {
                op,
                message,
                source,
            }
        } else {
            StoreError::Failed {
                op,
                message,
                source,
            }
        }
    }

    /// A failure that retrying cannot fix (encoding a document, a refused write).
    pub(crate) fn failed<E>(op: &'static str, err: E) -> StoreError
    where
        E: StdError + Send + Sync + 'static,
    {
        StoreError::Failed {
            op,
            message: err.to_string(),
            source: Some(Arc::new(err)),
        }
    }

    /// Outcome unknown after retries of a timed-out operation.
    pub(crate) fn unavailable(op: &'static str, message: String) -> StoreError {
        StoreError::Unavailable {
            op,
            message,
            source: None,
        }
    }
}

/// True when `err` or an error in its source chain is of a kind that a retry can fix: a
/// timeout, no responders (JetStream not ready, a leader election), a lost or closed
/// connection, or an I/O error.
pub fn is_transient_nats(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(verdict) = kind_verdict(e) {
            return verdict;
        }
        current = e.source();
    }
    false
}

/// The verdict of one error in the chain, when its kind decides; `None` to look at its
/// source (kinds such as `Other` or `Request` that only wrap another error).
fn kind_verdict(e: &(dyn StdError + 'static)) -> Option<bool> {
    macro_rules! kind {
        ($ty:ty, [$($transient:pat),*], [$($wrapper:pat),*]) => {
            if let Some(err) = e.downcast_ref::<$ty>() {
                return match err.kind() {
                    $($transient => Some(true),)*
                    $($wrapper => None,)*
                    #[allow(unreachable_patterns)]
                    _ => Some(false),
                };
            }
        };
    }
    use async_nats::{ConnectErrorKind as Connect, client};
    kind!(
        context::RequestError,
        [
            context::RequestErrorKind::TimedOut,
            context::RequestErrorKind::NoResponders
        ],
        [context::RequestErrorKind::Other]
    );
    kind!(
        client::RequestError,
        [
            client::RequestErrorKind::TimedOut,
            client::RequestErrorKind::NoResponders
        ],
        [client::RequestErrorKind::Other]
    );
    kind!(
        context::PublishError,
        [
            context::PublishErrorKind::TimedOut,
            context::PublishErrorKind::BrokenPipe,
            // No responders on the stream's subject: in a cluster, its leader is being
            // elected (a node was lost). A stream that truly does not exist runs out of
            // retries all the same.
            context::PublishErrorKind::StreamNotFound
        ],
        [context::PublishErrorKind::Other]
    );
    kind!(client::PublishError, [client::PublishErrorKind::Send], []);
    kind!(
        client::SubscribeError,
        [client::SubscribeErrorKind::Other],
        []
    );
    kind!(
        async_nats::ConnectError,
        [
            Connect::TimedOut,
            Connect::Io,
            Connect::Dns,
            Connect::MaxReconnects
        ],
        []
    );
    kind!(
        kv::EntryError,
        [kv::EntryErrorKind::TimedOut],
        [kv::EntryErrorKind::Other]
    );
    kind!(
        kv::UpdateError,
        [kv::UpdateErrorKind::TimedOut],
        [kv::UpdateErrorKind::Other]
    );
    kind!(
        kv::WatchError,
        [kv::WatchErrorKind::TimedOut],
        [
            kv::WatchErrorKind::Other,
            kv::WatchErrorKind::ConsumerCreate
        ]
    );
    kind!(
        kv::CreateError,
        [kv::CreateErrorKind::Publish, kv::CreateErrorKind::Ack],
        [kv::CreateErrorKind::Other]
    );
    kind!(
        kv::PutError,
        [kv::PutErrorKind::Publish, kv::PutErrorKind::Ack],
        []
    );
    kind!(kv::StatusError, [kv::StatusErrorKind::TimedOut], []);
    kind!(
        context::GetStreamError,
        [],
        [context::GetStreamErrorKind::Request]
    );
    kind!(
        stream::ConsumerError,
        [stream::ConsumerErrorKind::TimedOut],
        [
            stream::ConsumerErrorKind::Request,
            stream::ConsumerErrorKind::Other
        ]
    );
    kind!(
        stream::DirectGetError,
        [stream::DirectGetErrorKind::TimedOut],
        [
            stream::DirectGetErrorKind::Request,
            stream::DirectGetErrorKind::Other
        ]
    );
    kind!(
        consumer::pull::BatchError,
        [
            consumer::pull::BatchErrorKind::Subscribe,
            consumer::pull::BatchErrorKind::Pull,
            consumer::pull::BatchErrorKind::Flush
        ],
        []
    );
    kind!(
        object_store::InfoError,
        [object_store::InfoErrorKind::TimedOut],
        [object_store::InfoErrorKind::Other]
    );
    if e.downcast_ref::<std::io::Error>().is_some() {
        return Some(true);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_lost_connections_are_transient() {
        let timed_out = kv::UpdateError::new(kv::UpdateErrorKind::TimedOut);
        assert!(StoreError::nats("update", timed_out).is_transient());
        let broken = context::PublishError::new(context::PublishErrorKind::BrokenPipe);
        assert!(StoreError::nats("publish", broken).is_transient());
        let no_responders = context::RequestError::new(context::RequestErrorKind::NoResponders);
        assert!(StoreError::nats("request", no_responders).is_transient());
        // A cluster electing the stream's leader: the write has no responders for a while.
        let electing = kv::UpdateError::with_source(
            kv::UpdateErrorKind::Other,
            context::PublishError::new(context::PublishErrorKind::StreamNotFound),
        );
        assert!(StoreError::nats("update", electing).is_transient());
    }

    #[test]
    fn refusals_are_not_and_keep_their_source_and_text() {
        let too_big = context::PublishError::new(context::PublishErrorKind::MaxPayloadExceeded);
        let e = StoreError::nats("publish job", too_big);
        assert!(!e.is_transient());
        assert!(e.source().is_some());
        assert!(e.to_string().starts_with("publish job: "), "{e}");
        let wrong = kv::UpdateError::new(kv::UpdateErrorKind::WrongLastRevision);
        assert!(!StoreError::nats("update", wrong).is_transient());
    }

    #[test]
    fn a_wrapper_kind_is_decided_by_its_source() {
        let inner = context::RequestError::new(context::RequestErrorKind::TimedOut);
        let outer = kv::EntryError::with_source(kv::EntryErrorKind::Other, inner);
        let e = StoreError::nats("get", outer);
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("nats unavailable: get: "), "{e}");
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        assert!(StoreError::nats_about("pull", "tag gpu", io).is_transient());
    }
}
