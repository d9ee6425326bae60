//! Request bodies: a deadline for receiving them, and the answer to one
//! that could not be read.

use crate::node::Node;
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tracing::info;

/// A JSON error answer, `{"error": code, "message": ...}`: the API's, and
/// the one for a body that could not be read on any route.
pub(crate) fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

/// A request body was not received within `handshake_timeout` of its head.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the handshake timeout")]
pub struct BodyTimeout;

/// A request body with a deadline: once `handshake_timeout` has passed
/// since the head arrived, reading it fails with [`BodyTimeout`], so a
/// client that trickles or stalls its body cannot hold a socket and a
/// handler for longer than one that stalls its headers.
pub struct DeadlineBody {
    inner: Incoming,
    // Boxed, and only for bodies that have data to come (not GETs).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    pub fn new(inner: Incoming, wait: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(wait)));
        DeadlineBody { inner, deadline }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let expired = match &mut this.deadline {
                    Some(d) => d.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` or anything in its source chain is a `T`.
fn caused_by<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A body that could not be read: too slow (408, and the connection is
/// closed so its socket is freed), too large (413), or broken (400).
/// `bound` names the limit a too-large body broke, for its 413.
pub(crate) fn body_error(
    node: &Node,
    peer: SocketAddr,
    err: &axum::Error,
    bound: &str,
) -> Response {
    if caused_by::<BodyTimeout>(err) {
        node.metrics.refusal("body_timeout");
        info!(%peer, "request body not received within the handshake timeout; closing");
        let mut res = api_error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "request body not received in time",
        );
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    if caused_by::<http_body_util::LengthLimitError>(err) {
        node.metrics.refusal("body_too_large");
        let mut res = api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            &format!("request body too large (limit: {bound})"),
        );
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    api_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        &format!("cannot read the request body: {err}"),
    )
}
