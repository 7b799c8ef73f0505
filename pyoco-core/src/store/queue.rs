//! The work queue: publishing jobs with de-duplication, per-tag durable consumers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Layout, StoreError};
use crate::config::Config;

/// How often a publish whose outcome is unknown (timeout) is retried with the same
/// `Nats-Msg-Id` before giving up.
const PUBLISH_ATTEMPTS: u32 = 3;

/// Publishes `payload` on `subject` into `stream`, with `Nats-Msg-Id: <msg_id>` so a retried
/// publish is de-duplicated by the stream. Returns `Ok(true)` when it was new, `Ok(false)`
/// when the stream already had it.
///
/// An error means the message was *definitely* not stored, except for
/// [`StoreError::Unavailable`], whose outcome is unknown.
pub async fn publish_deduplicated(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    msg_id: &str,
    payload: Bytes,
) -> Result<bool, StoreError> {
    let mut last = None;
    for _ in 0..PUBLISH_ATTEMPTS {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        headers.insert("Nats-Expected-Stream", stream);
        // The submit's trace context, so the worker's run span joins its trace.
        crate::store::trace_context::inject_current(&mut headers);
        let sent = js
            .publish_with_headers(subject.to_string(), headers, payload.clone())
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => return Ok(!ack.duplicate),
            Err(e)
                if matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                ) =>
            {
                last = Some(e);
            }
            Err(e) => {
                return Err(StoreError::failed("publish job", e));
            }
        }
    }
    Err(match last {
        Some(e) => StoreError::nats("publish job", e),
        None => StoreError::unavailable("publish job", String::new()),
    })
}

/// Publishes without de-duplication (DLQ messages).
pub async fn publish(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    payload: Bytes,
) -> Result<(), StoreError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Expected-Stream", stream);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, payload)
        .await
        .map_err(|e| StoreError::nats("publish", e))?;
    ack.await
        .map(|_| ())
        .map_err(|e| StoreError::nats("publish", e))
}

/// Creates or updates the durable pull consumer of `tag` (`pyoco_workers_<tag>`, filter
/// `pyoco.work.<tag>`) with this worker's ack wait, max deliver and max ack pending, as the
/// original does (the last worker to start wins).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    layout: &Layout,
    config: &Config,
    tag: &str,
) -> Result<consumer::PullConsumer, StoreError> {
    let stream = js
        .get_stream(&layout.work_stream)
        .await
        .map_err(|e| StoreError::nats("get work stream", e))?;
    let name = layout.consumer_name(tag);
    let consumer_config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: layout.work_subject(tag),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.consumer_ack_wait,
        max_deliver: config.consumer_max_deliver,
        max_ack_pending: config.consumer_max_ack_pending,
        ..Default::default()
    };
    stream
        .create_consumer(consumer_config)
        .await
        .map_err(|e| StoreError::nats("create consumer", e))
}

/// How long a NAK asks the server to wait before redelivering (the original's fixed 2 s).
pub const NAK_DELAY: Duration = Duration::from_secs(2);

/// One tag's durable pull consumer (`pyoco_workers_<tag>`).
#[derive(Debug)]
pub struct WorkConsumer {
    tag: String,
    inner: consumer::PullConsumer,
}

/// The messages of one pull request, as they arrive; ends when the request expires or is
/// filled.
pub type Pull = futures::stream::BoxStream<'static, Result<Delivery, StoreError>>;

impl WorkConsumer {
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Asks for up to `max` jobs, waiting at most `expires` for them.
    pub async fn pull(&self, max: usize, expires: Duration) -> Result<Pull, StoreError> {
        let batch = self
            .inner
            .batch()
            .max_messages(max.max(1))
            .expires(expires)
            .messages()
            .await
            .map_err(|e| StoreError::nats_about("pull", &format!("tag {}", self.tag), e))?;
        Ok(batch
            .map(|item| {
                item.map(Delivery)
                    .map_err(|e| StoreError::nats_boxed("pull", e))
            })
            .boxed())
    }
}

/// How a worker answers a delivered job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Done with it: the stream removes it.
    Ack,
    /// Still working on it (`+WPI`): the ack wait starts over.
    Progress,
    /// Redeliver it, after the delay when one is given.
    Nak(Option<Duration>),
    /// Never deliver it again.
    Term,
}

/// A job delivered to this worker, with the means to answer it.
#[derive(Debug)]
pub struct Delivery(jetstream::Message);

impl Delivery {
    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    pub fn subject(&self) -> &str {
        self.0.subject.as_str()
    }

    /// The message's headers (`traceparent`, …), if it has any.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.0.headers.as_ref()
    }

    /// How many times it was delivered, this time included (1 when the server did not say).
    pub fn delivered(&self) -> i64 {
        self.0.info().map(|i| i.delivered).unwrap_or(1)
    }

    /// Sends `reply` to the server.
    pub async fn reply(&self, reply: Reply) -> Result<(), StoreError> {
        let kind = match reply {
            Reply::Ack => jetstream::AckKind::Ack,
            Reply::Progress => jetstream::AckKind::Progress,
            Reply::Nak(delay) => jetstream::AckKind::Nak(delay),
            Reply::Term => jetstream::AckKind::Term,
        };
        self.0
            .ack_with(kind)
            .await
            .map_err(|e| StoreError::nats_boxed("ack", e))
    }
}

impl super::Store {
    /// [`ensure_consumer`] for `tag` with this store's layout and config.
    pub async fn ensure_consumer(&self, tag: &str) -> Result<WorkConsumer, StoreError> {
        Ok(WorkConsumer {
            tag: tag.to_string(),
            inner: ensure_consumer(&self.js, &self.layout, &self.config, tag).await?,
        })
    }

    /// Messages waiting per tag in the work stream, from its per-subject counts (one request
    /// per page of subjects, whatever the number of messages).
    pub async fn queue_depths(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(&self.layout.work_stream)
            .await
            .map_err(|e| StoreError::nats("work stream info", e))?;
        let mut subjects = stream
            .info_with_subjects(self.layout.work_subjects())
            .await
            .map_err(|e| StoreError::nats("work stream info", e))?;
        let mut out = BTreeMap::new();
        while let Some((subject, n)) = subjects
            .try_next()
            .await
            .map_err(|e| StoreError::nats("work stream info", e))?
        {
            if let Some(tag) = self.layout.work_subject_tag(&subject) {
                *out.entry(tag.to_string()).or_insert(0) += n as u64;
            }
        }
        Ok(out)
    }

    /// Messages in the dead-letter stream.
    pub async fn dlq_size(&self) -> Result<u64, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(&self.layout.dlq_stream)
            .await
            .map_err(|e| StoreError::nats("dlq stream info", e))?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| StoreError::nats("dlq stream info", e))?;
        Ok(info.state.messages)
    }
}
