//! The SSE watch of [`HttpClient::watch_run`]: `eventsource-client` parses the stream over a
//! `reqwest` transport (plain http and https alike), and this module turns its items into
//! typed [`WatchEvent`]s, reconnecting after the server closes early.
//!
//! Reconnects are done here rather than by `eventsource-client`: its parser starts afresh on
//! every connection and sets the stream's last event id from every event, so a heartbeat
//! (which carries no `id:`) arriving first on a new connection would clear the id, and the
//! next reconnect would then replay the current snapshot. Each connection here is one
//! `eventsource-client` stream without automatic reconnect, opened with `Last-Event-ID` set
//! to the last snapshot revision actually delivered.

use std::pin::Pin;
use std::time::Duration;

use eventsource_client as es;
use eventsource_client::Client as _;
use futures::{Stream, StreamExt};
use launchdarkly_sdk_transport::ByteStream;
use serde_json::Value;
use tokio::time::Instant;

use super::{HttpClient, HttpError, StatusError, error_chain, segment};

mod event;
mod transport;

pub use event::WatchEvent;
use transport::ReqwestTransport;

/// The events of a watch, best handled with `while let Some(event) = stream.next().await`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, HttpError>> + Send>>;

/// Consecutive failed reconnects after which the watch gives up with the last error. With the
/// back-off below this spans about half a minute, long enough for a gateway restart.
const MAX_RECONNECT_FAILURES: u32 = 10;
/// Upper bound of the back-off between failed reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an error body is kept for [`StatusError::body`].
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Options of [`HttpClient::watch_run`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Keep `task_records` in each snapshot (`include=records`).
    pub include_records: bool,
    /// Only snapshots with `updated_at >= since` are sent.
    pub since: Option<f64>,
    /// `timeout_sec` of each connection: the gateway closes the stream after it (1..=600; the
    /// gateway's default is 60). The watch then reconnects unless the run is terminal or
    /// [`deadline`](Self::deadline) has passed. Values outside 1..=600 are clamped.
    pub timeout_sec: Option<u64>,
    /// How long the whole watch may last, reconnects included; the stream then ends without
    /// an error (the caller sees that no terminal snapshot came). `None`: until the run is
    /// terminal.
    pub deadline: Option<Duration>,
    /// Pause before retrying after a connection failed (refused, dropped mid-event, 502..504);
    /// it doubles with each further failure, up to 5 s. Default 200 ms. A connection the
    /// server closed normally (its `timeout_sec`) is re-opened at once.
    pub reconnect_delay: Duration,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            include_records: false,
            since: None,
            timeout_sec: None,
            deadline: None,
            reconnect_delay: Duration::from_millis(200),
        }
    }
}

/// Starts the watch; nothing is sent until the stream is first polled.
pub(super) fn watch(client: HttpClient, run_id: String, opts: WatchOptions) -> WatchStream {
    let state = Watch::new(client, run_id, opts);
    Box::pin(futures::stream::unfold(state, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

/// The state of one watch across its connections.
struct Watch {
    client: HttpClient,
    run_id: String,
    opts: WatchOptions,
    deadline: Option<Instant>,
    conn: Option<es::BoxStream<es::Result<es::SSE>>>,
    /// A connection was accepted once: later failures are retried, earlier ones are final
    /// (a 404 or a refused connection is not going to fix itself).
    connected_once: bool,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// Pause before the next connection; `None` for the first one.
    next_delay: Option<Duration>,
    /// When the current connection was accepted, and whether it delivered an event.
    conn_opened: Option<Instant>,
    events_on_conn: u32,
    /// Revision of the last snapshot delivered, sent as `Last-Event-ID`.
    last_revision: Option<u64>,
    /// The last snapshot delivered without a revision, to drop the copy that a server without
    /// event ids sends again after a reconnect.
    last_unversioned: Option<Value>,
    done: bool,
}

/// What to do after a connection ended with an error.
enum Next {
    Reconnect(Duration),
    Fail(HttpError),
    /// The run is over and nothing more will come (e.g. `since` is past its last update).
    End,
}

impl Watch {
    /// A watch that has not connected yet.
    fn new(client: HttpClient, run_id: String, opts: WatchOptions) -> Watch {
        Watch {
            client,
            run_id,
            deadline: opts.deadline.map(|d| Instant::now() + d),
            opts,
            conn: None,
            connected_once: false,
            failures: 0,
            next_delay: None,
            conn_opened: None,
            events_on_conn: 0,
            last_revision: None,
            last_unversioned: None,
            done: false,
        }
    }

    /// The next event; `None` once the watch is over.
    async fn next(&mut self) -> Option<Result<WatchEvent, HttpError>> {
        loop {
            if self.done || self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.finish();
                return None;
            }
            if self.conn.is_none() {
                if let Some(delay) = self.next_delay {
                    let wake = Instant::now() + delay;
                    let wake = self.deadline.map_or(wake, |d| wake.min(d));
                    tokio::time::sleep_until(wake).await;
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        continue;
                    }
                }
                match self.connect() {
                    Ok(conn) => self.conn = Some(conn),
                    Err(e) => return Some(Err(self.fail(e))),
                }
                self.conn_opened = None;
                self.events_on_conn = 0;
            }
            let item = {
                let conn = self.conn.as_mut()?;
                match self.deadline {
                    Some(deadline) => tokio::select! {
                        item = conn.next() => item,
                        () = tokio::time::sleep_until(deadline) => continue,
                    },
                    None => conn.next().await,
                }
            };
            match item {
                Some(Ok(es::SSE::Connected(_))) => {
                    self.connected_once = true;
                    self.conn_opened = Some(Instant::now());
                    self.failures = 0;
                }
                Some(Ok(es::SSE::Comment(_))) => {}
                Some(Ok(es::SSE::Event(event))) => {
                    self.events_on_conn += 1;
                    match self.event(event) {
                        Ok(Some(out)) => return Some(Ok(out)),
                        Ok(None) => {}
                        Err(e) => return Some(Err(self.fail(e))),
                    }
                }
                // The connection is over; each one is a stream without its own reconnect.
                Some(Err(e)) => {
                    self.conn = None;
                    match self.after_error(e).await {
                        Next::Reconnect(delay) => self.next_delay = Some(delay),
                        Next::Fail(e) => return Some(Err(self.fail(e))),
                        Next::End => {
                            self.finish();
                            return None;
                        }
                    }
                }
                // Not expected without reconnect (an `Err` comes first); treat it as a failure.
                None => {
                    self.conn = None;
                    self.failures += 1;
                    if self.failures > MAX_RECONNECT_FAILURES {
                        let e = HttpError::Transport("the watch connection closed".into());
                        return Some(Err(self.fail(e)));
                    }
                    self.next_delay = Some(self.opts.reconnect_delay);
                }
            }
        }
    }

    /// Ends the watch with `e`.
    fn fail(&mut self, e: HttpError) -> HttpError {
        self.finish();
        e
    }

    /// Drops the connection (closing it) and ends the watch.
    fn finish(&mut self) {
        self.done = true;
        self.conn = None;
    }

    /// Turns one SSE event into a [`WatchEvent`]; `None` for events to skip (repeats, unknown
    /// names).
    fn event(&mut self, event: es::Event) -> Result<Option<WatchEvent>, HttpError> {
        let parse = |data: &str| {
            serde_json::from_str::<Value>(data).map_err(|e| {
                HttpError::Decode(format!("watch event {} is not JSON: {e}", event.event_type))
            })
        };
        let ts_of = |data: &Value, snapshot: Option<&Value>| {
            data.get("ts")
                .and_then(Value::as_f64)
                .or_else(|| snapshot?.get("updated_at")?.as_f64())
                .unwrap_or_default()
        };
        let run_id_of = |data: &Value| {
            data.get("run_id")
                .and_then(Value::as_str)
                .map_or_else(|| self.run_id.clone(), str::to_string)
        };
        match event.event_type.as_str() {
            "snapshot" => {
                let mut data = parse(&event.data)?;
                let snapshot = match data.get_mut("snapshot").map(Value::take) {
                    Some(s @ Value::Object(_)) => s,
                    _ => {
                        return Err(HttpError::Decode(
                            "watch snapshot event without a snapshot object".into(),
                        ));
                    }
                };
                let revision = event.id.as_deref().and_then(|id| id.trim().parse().ok());
                match revision {
                    // Already delivered before a reconnect.
                    Some(rev) if self.last_revision.is_some_and(|last| rev <= last) => {
                        return Ok(None);
                    }
                    Some(rev) => self.last_revision = Some(rev),
                    None => {
                        if self.last_unversioned.as_ref() == Some(&snapshot) {
                            return Ok(None);
                        }
                        self.last_unversioned = Some(snapshot.clone());
                    }
                }
                let out = WatchEvent::Snapshot {
                    run_id: run_id_of(&data),
                    ts: ts_of(&data, Some(&snapshot)),
                    snapshot,
                    revision,
                };
                if out.is_terminal() {
                    // Nothing follows a terminal snapshot: close now rather than wait for
                    // the server (the original keeps the stream open until its timeout).
                    self.finish();
                }
                Ok(Some(out))
            }
            "heartbeat" => {
                let data = parse(&event.data)?;
                Ok(Some(WatchEvent::Heartbeat {
                    run_id: run_id_of(&data),
                    ts: ts_of(&data, None),
                }))
            }
            // Unknown events are skipped so that a newer gateway can add some.
            _ => Ok(None),
        }
    }

    /// Decides between reconnecting and giving up after a connection ended with `e`.
    async fn after_error(&mut self, e: es::Error) -> Next {
        let err = match e {
            // The server closed the stream between events: its timeout, or a restart. A
            // connection closed at once without an event counts as a failure, so a server
            // that keeps doing that is not hammered.
            es::Error::Eof
                if self.events_on_conn > 0
                    || self
                        .conn_opened
                        .is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) =>
            {
                self.failures = 0;
                // At once: with a history of one revision per key, every change written
                // during the gap but overwritten before the reconnect is lost to the watch.
                return Next::Reconnect(Duration::ZERO);
            }
            // Closed at once: the gateway does that for a run that is already over when every
            // snapshot is filtered out (`since`). Ask before treating it as a failure.
            es::Error::Eof => {
                if let Ok(run) = self.client.get_run(&self.run_id, false).await
                    && run
                        .get("status")
                        .and_then(Value::as_str)
                        .is_some_and(crate::model::RunStatus::is_terminal_str)
                {
                    return Next::End;
                }
                HttpError::Transport("the gateway closed the watch at once".into())
            }
            es::Error::UnexpectedEof => HttpError::Transport(
                "the watch connection dropped in the middle of an event".into(),
            ),
            es::Error::TimedOut => HttpError::Transport(format!(
                "no data on the watch connection for {} s",
                super::SSE_READ_TIMEOUT.as_secs()
            )),
            es::Error::Transport(t) => HttpError::Transport(error_chain(t.inner())),
            es::Error::HttpStream(s) => HttpError::Transport(error_chain(s.as_ref())),
            es::Error::UnexpectedResponse(resp, body) => {
                let status = resp.status();
                let body = read_body(body.into_stream()).await;
                let path = format!("/runs/{}/watch", segment(&self.run_id));
                let err =
                    HttpError::Status(Box::new(StatusError::from_body(status, "GET", &path, body)));
                // Only a gateway that is (re)starting or cut off from NATS may recover; a 404
                // means the run was deleted.
                if !matches!(status, 502..=504) {
                    return Next::Fail(err);
                }
                err
            }
            es::Error::InvalidLine(line) => {
                HttpError::Decode(format!("invalid line in the watch stream: {line}"))
            }
            other => return Next::Fail(HttpError::Transport(other.to_string())),
        };
        if !self.connected_once {
            return Next::Fail(err);
        }
        self.failures += 1;
        if self.failures > MAX_RECONNECT_FAILURES {
            return Next::Fail(err);
        }
        tracing::debug!(run_id = %self.run_id, error = %err, failures = self.failures, "watch reconnects");
        let factor = 1u32 << self.failures.min(8);
        Next::Reconnect((self.opts.reconnect_delay * factor).min(MAX_BACKOFF))
    }

    /// Opens one connection (lazily: the request goes out on the first poll).
    fn connect(&self) -> Result<es::BoxStream<es::Result<es::SSE>>, HttpError> {
        let url = self.url()?;
        let invalid = |e: es::Error| HttpError::Transport(format!("watch request: {e}"));
        let mut builder = es::ClientBuilder::for_url(url.as_str())
            .map_err(invalid)?
            .reconnect(
                es::ReconnectOptions::reconnect(false)
                    .retry_initial(false)
                    .build(),
            )
            .redirect_limit(0);
        if let Some(rev) = self.last_revision {
            builder = builder.last_event_id(rev.to_string());
        }
        if let Some((header, key)) = &self.client.api_key {
            builder = builder.header(header, key).map_err(invalid)?;
        }
        let transport = ReqwestTransport {
            http: self.client.sse_http.clone(),
            hmac_secret: self.client.hmac_secret.clone(),
        };
        Ok(builder.build_with_transport(transport).stream())
    }

    /// The watch URL with its query; `timeout_sec` never outlasts the deadline, so the
    /// server closes when the caller stops caring.
    fn url(&self) -> Result<reqwest::Url, HttpError> {
        let raw = format!("{}/runs/{}/watch", self.client.base, segment(&self.run_id));
        let mut url =
            reqwest::Url::parse(&raw).map_err(|e| HttpError::Transport(format!("{raw}: {e}")))?;
        let remaining = self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .as_secs_f64()
                .ceil() as u64
        });
        let timeout = match (self.opts.timeout_sec, remaining) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if self.opts.include_records {
            pairs.push(("include", "records".into()));
        }
        if let Some(since) = self.opts.since {
            pairs.push(("since", since.to_string()));
        }
        if let Some(t) = timeout {
            pairs.push(("timeout_sec", t.clamp(1, 600).to_string()));
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }
}

/// Reads an error body, up to [`MAX_ERROR_BODY`] bytes and 5 s.
async fn read_body(mut body: ByteStream) -> String {
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() >= MAX_ERROR_BODY {
                buf.truncate(MAX_ERROR_BODY);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok();
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn watch_with(opts: WatchOptions) -> Watch {
        Watch::new(
            HttpClient::new("http://127.0.0.1:1/").unwrap(),
            "r/1".into(),
            opts,
        )
    }

    fn sse(name: &str, id: Option<&str>, data: Value) -> es::Event {
        es::Event {
            event_type: name.into(),
            data: data.to_string(),
            id: id.map(str::to_string),
            retry: None,
        }
    }

    #[tokio::test]
    async fn url_carries_the_query_and_caps_timeout_by_the_deadline() {
        let w = watch_with(WatchOptions {
            include_records: true,
            since: Some(12.5),
            timeout_sec: Some(900),
            deadline: Some(Duration::from_millis(2500)),
            ..WatchOptions::default()
        });
        assert_eq!(
            w.url().unwrap().as_str(),
            "http://127.0.0.1:1/runs/r%2F1/watch?include=records&since=12.5&timeout_sec=3"
        );
        let plain = watch_with(WatchOptions {
            timeout_sec: Some(900),
            ..WatchOptions::default()
        });
        assert_eq!(
            plain.url().unwrap().as_str(),
            "http://127.0.0.1:1/runs/r%2F1/watch?timeout_sec=600"
        );
        let bare = watch_with(WatchOptions::default());
        assert_eq!(
            bare.url().unwrap().as_str(),
            "http://127.0.0.1:1/runs/r%2F1/watch"
        );
    }

    #[tokio::test]
    async fn repeated_revisions_and_unversioned_copies_are_dropped() {
        let mut w = watch_with(WatchOptions::default());
        let snap = |status: &str| json!({"run_id": "r", "snapshot": {"status": status, "updated_at": 3.0}, "ts": 4.0});
        let first = w
            .event(sse("snapshot", Some("5"), snap("RUNNING")))
            .unwrap();
        assert!(matches!(
            first,
            Some(WatchEvent::Snapshot {
                revision: Some(5),
                ts: 4.0,
                ..
            })
        ));
        assert_eq!(
            w.event(sse("snapshot", Some("5"), snap("RUNNING")))
                .unwrap(),
            None
        );
        assert_eq!(
            w.event(sse("snapshot", None, snap("RUNNING"))).unwrap(),
            Some(WatchEvent::Snapshot {
                run_id: "r".into(),
                snapshot: json!({"status": "RUNNING", "updated_at": 3.0}),
                revision: None,
                ts: 4.0
            })
        );
        assert_eq!(
            w.event(sse("snapshot", None, snap("RUNNING"))).unwrap(),
            None
        );
        let hb = w
            .event(sse("heartbeat", None, json!({"run_id": "r", "ts": 9.0})))
            .unwrap()
            .unwrap();
        assert_eq!(
            hb.to_json(),
            json!({"event": "heartbeat", "data": {"run_id": "r", "ts": 9.0}})
        );
        assert_eq!(w.event(sse("other", None, json!({}))).unwrap(), None);
        assert!(!w.done);
        let last = w
            .event(sse("snapshot", Some("7"), snap("FAILED")))
            .unwrap()
            .unwrap();
        assert!(last.is_terminal());
        assert!(w.done, "a terminal snapshot ends the watch");
        assert!(matches!(
            w.event(sse("snapshot", None, json!("x"))),
            Err(HttpError::Decode(_))
        ));
        assert!(matches!(
            w.event(es::Event {
                event_type: "snapshot".into(),
                data: "{nope".into(),
                id: None,
                retry: None
            }),
            Err(HttpError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn failures_before_the_first_connection_are_final_and_later_ones_back_off() {
        let mut w = watch_with(WatchOptions::default());
        assert!(matches!(
            w.after_error(es::Error::UnexpectedEof).await,
            Next::Fail(HttpError::Transport(_))
        ));
        w.connected_once = true;
        w.events_on_conn = 1;
        assert!(matches!(
            w.after_error(es::Error::Eof).await,
            Next::Reconnect(Duration::ZERO)
        ));
        w.events_on_conn = 0;
        let mut last = Duration::ZERO;
        for _ in 0..MAX_RECONNECT_FAILURES {
            match w.after_error(es::Error::Eof).await {
                Next::Reconnect(d) => {
                    assert!(d >= last && d <= MAX_BACKOFF);
                    last = d;
                }
                Next::Fail(e) => panic!("gave up early: {e}"),
                Next::End => panic!("no gateway answers here, so the run cannot be over"),
            }
        }
        assert!(matches!(w.after_error(es::Error::Eof).await, Next::Fail(_)));
    }
}
