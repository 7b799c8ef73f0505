//! `eventsource-client`'s HTTP transport on `reqwest`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use launchdarkly_sdk_transport::{
    ByteStream, HttpTransport, Request, Response, ResponseFuture, TransportError,
};

/// `eventsource-client`'s HTTP transport implemented on `reqwest`, so the watch shares the
/// TLS set-up of the other requests and works for `https://` gateways too.
#[derive(Clone)]
pub(super) struct ReqwestTransport {
    pub(super) http: reqwest::Client,
    /// Signs each (re)connect with a fresh nonce when the gateway wants signed requests.
    pub(super) hmac_secret: Option<std::sync::Arc<str>>,
}

impl HttpTransport for ReqwestTransport {
    fn request(&self, request: Request<Option<Bytes>>) -> ResponseFuture {
        let http = self.http.clone();
        let secret = self.hmac_secret.clone();
        let future = async move {
            let (parts, body) = request.into_parts();
            let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(TransportError::new)?;
            let signature = secret.as_deref().map(|secret| {
                let bytes = body.as_deref().unwrap_or_default();
                crate::client::http::signature_headers(secret, &parts.method, &url, bytes)
            });
            let mut req = http.request(parts.method, url).headers(parts.headers);
            for (name, value) in signature.into_iter().flatten() {
                req = req.header(name, value);
            }
            if let Some(body) = body {
                req = req.body(body);
            }
            let resp = req.send().await.map_err(TransportError::new)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let stream: ByteStream = Box::pin(SyncCell::new(
                resp.bytes_stream().map_err(TransportError::new),
            ));
            let mut out = Response::new(stream);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        };
        Box::pin(SyncCell::new(Box::pin(future)))
    }
}

/// Makes a `Send` future or stream `Sync`, as the transport's types demand, by polling it
/// under a mutex that is never contended (polling needs `&mut` anyway).
struct SyncCell<T>(Mutex<T>);

impl<T: Unpin> SyncCell<T> {
    fn new(inner: T) -> SyncCell<T> {
        SyncCell(Mutex::new(inner))
    }

    fn inner(self: Pin<&mut Self>) -> &mut T {
        // A panic while polling poisons the mutex; the value is still the one to poll.
        self.get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Future + Unpin> Future for SyncCell<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        Pin::new(self.inner()).poll(cx)
    }
}

impl<T: Stream + Unpin> Stream for SyncCell<T> {
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        Pin::new(self.inner()).poll_next(cx)
    }
}
