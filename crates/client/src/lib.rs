//! A Rust client for the Tether gateway that keeps its connection up and
//! loses nothing when it cannot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tether_client::Error> {
//! use futures_util::StreamExt;
//! use tether_client::{Client, Event};
//!
//! let client = Client::builder("ws://127.0.0.1:8080/ws").build()?;
//! let mut news = client.subscribe("news").await?;
//! let offset = client.publish("news", serde_json::json!({"hello": "world"})).await?;
//! while let Some(event) = news.next().await {
//!     match event {
//!         Event::Publication(p) => println!("{} {}", p.offset, p.data),
//!         Event::Unrecovered { .. } => println!("missed publications: resync"),
//!         _ => {}
//!     }
//! }
//! # let _ = offset; Ok(()) }
//! ```
//!
//! One background task owns the connection: it connects, reconnects with
//! exponential backoff and full jitter, sends application pings and drops a
//! connection that stays silent past `ping_interval + pong_timeout`,
//! resubscribes with recovery, retries a subscribe the server refused for
//! now (`unavailable`, ...), and resends unacknowledged publishes with
//! their idempotency keys. Presence channels (docs/presence.md) are asked
//! with [`Subscription::presence`] / [`Client::presence`], and yield
//! [`Event::Join`] / [`Event::Leave`]. With a backend's hooks
//! (docs/hooks.md): [`Client::rpc`] calls the rpc hook,
//! [`ClientBuilder::connect_data`] is shown to the connect hook, and the
//! channels it subscribes the client to arrive on
//! [`Client::server_subscriptions`]. See `docs/client.md` for the full
//! semantics.

mod connect_data;
mod driver;
mod error;
mod handshake;
mod presence;
mod reconnect;
mod resubscribe;
mod rpc;
mod server_subs;
mod session;
mod subscription;

pub use error::Error;
pub use presence::PresenceStats;
pub use reconnect::Jitter;
pub use resubscribe::{is_retryable, RETRYABLE};
pub use server_subs::{ServerEvent, ServerSubscriptions};
pub use subscription::{Event, Publication, Subscription};
pub use tether_protocol::{ErrorCode, PresenceEntry};

use connect_data::ConnectData;
use driver::{Command, Pending};
use presence::{Ask, PresenceRequest};
use server_subs::Sink;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tether_protocol::Backoff;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// The connection state, observable through [`Client::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The first connection attempt is under way.
    Connecting,
    /// Connected: the server's `welcome` arrived.
    Connected,
    /// The connection ended; retry number `attempt` (1-based) starts after
    /// `next_delay` (and the state stays `Reconnecting` while it runs).
    /// `code` and `reason` say why, as in `Disconnected`: the close code
    /// (1006 for a lost connection or a failed connect) or the HTTP status
    /// of a refused handshake, and a one-line reason.
    Reconnecting {
        attempt: u32,
        next_delay: Duration,
        code: u16,
        reason: String,
    },
    /// Stopped for good. `code` is the close code that forbade reconnecting
    /// (1000, 1008, 4001, 4500-4999, or 4002 without a token refresher), 1006 when the
    /// attempt limit was reached after lost connections, or the HTTP status
    /// of a refused handshake (400, 401, 403, 404).
    Disconnected { code: u16, reason: String },
}

/// Supplies a fresh token after the server closed with 4002 (token expired).
pub type TokenRefresher =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Options for a [`Client`]; start with [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    url: String,
    backoff: Backoff,
    max_attempts: Option<u32>,
    token: Option<String>,
    refresher: Option<TokenRefresher>,
    publish_queue: usize,
    subscription_buffer: usize,
    connect_timeout: Duration,
    idempotency_window: Duration,
    jitter: Jitter,
    extra_roots: Vec<Vec<u8>>,
    connect_data: Option<ConnectDataSource>,
}

/// What the builder was given as connect data, checked at `build()`.
enum ConnectDataSource {
    Fixed(serde_json::Value),
    Each(Arc<dyn Fn() -> serde_json::Value + Send + Sync>),
}

impl ClientBuilder {
    /// A JSON object sent with every connect for the backend's connect
    /// hook (docs/hooks.md), as the WebSocket URL's `data=` query
    /// parameter. It must be an object of at most 4 KiB URL-encoded:
    /// [`build`](Self::build) fails with [`Error::InvalidConnectData`]
    /// otherwise. Replaces an earlier `connect_data` or `connect_data_fn`.
    pub fn connect_data(mut self, data: serde_json::Value) -> Self {
        self.connect_data = Some(ConnectDataSource::Fixed(data));
        self
    }

    /// Like [`connect_data`](Self::connect_data), but asked of `data` before
    /// every connection attempt (so it can change between reconnects). An
    /// answer that is not an object of at most 4 KiB URL-encoded fails that
    /// attempt (the state's `reason` says why) and the client retries with
    /// backoff, asking again.
    pub fn connect_data_fn(
        mut self,
        data: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.connect_data = Some(ConnectDataSource::Each(Arc::new(data)));
        self
    }

    /// Trusts this PEM certificate (a private CA or a self-signed server)
    /// for `wss://`, in addition to the Mozilla roots built in.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(pem.into());
        self
    }

    /// Base reconnect delay; the first retry happens within it. Default 500 ms.
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.backoff.min_delay = d;
        self
    }

    /// Cap on any single reconnect delay. Default 30 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.backoff.max_delay = d;
        self
    }

    /// Retries after which the client gives up (counted since the last
    /// successful connection). Default: unlimited.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// A token sent as `Authorization: Bearer <token>` on every handshake.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Called after the server closed with 4002 (token expired); the client
    /// reconnects with the token it returns. Without a refresher, or when it
    /// fails, 4002 ends the client.
    pub fn token_refresher<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.refresher = Some(Arc::new(move || Box::pin(refresh())));
        self
    }

    /// How many publishes may await their ack (including those queued while
    /// disconnected). Beyond it [`Client::publish`] fails with
    /// [`Error::QueueFull`]. Default 1024. Rpcs waiting to be sent or
    /// answered have a queue of the same size of their own
    /// ([`Error::RpcQueueFull`]).
    pub fn publish_queue(mut self, n: usize) -> Self {
        self.publish_queue = n.max(1);
        self
    }

    /// Events buffered per subscription before the client stops reading the
    /// socket (see [`Subscription`]). Default 1024.
    pub fn subscription_buffer(mut self, n: usize) -> Self {
        self.subscription_buffer = n.max(1);
        self
    }

    /// Limit for TCP connect, upgrade and `welcome` together. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long the server remembers a publish's idempotency key: set it to
    /// match the server's `--idempotency-window`. Default 5 min (the server's
    /// default). A publish whose ack was lost with its connection is resent
    /// after the reconnect only while it was first sent less than this long
    /// ago; later the server would store the resend as a new publication, so
    /// the publish fails with [`Error::IdempotencyWindowExpired`] instead.
    pub fn idempotency_window(mut self, d: Duration) -> Self {
        self.idempotency_window = d;
        self
    }

    /// The randomness used for backoff jitter (uniform in `[0, 1)`); tests
    /// inject a fixed sequence. Default: `fastrand::f64`.
    pub fn jitter(mut self, jitter: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Starts the client: its background task begins connecting at once.
    /// Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        let uri = parse_url(&self.url)?;
        let tls = match uri.scheme_str() {
            Some("wss") => Some(handshake::tls_connector(&self.extra_roots)?),
            _ => None,
        };
        let connect_data = match self.connect_data {
            None => None,
            Some(ConnectDataSource::Fixed(value)) => {
                Some(ConnectData::Fixed(connect_data::encode(&value)?))
            }
            Some(ConnectDataSource::Each(f)) => Some(ConnectData::Each(f)),
        };
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (state_tx, state) = watch::channel(State::Connecting);
        let (server_events, server_rx) = mpsc::channel(self.subscription_buffer);
        let taken = Arc::new(AtomicBool::new(false));
        let config = driver::Config {
            uri,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            token: self.token,
            refresher: self.refresher,
            subscription_buffer: self.subscription_buffer,
            connect_timeout: self.connect_timeout,
            idempotency_window: self.idempotency_window,
            jitter: self.jitter,
            tls,
            connect_data,
            server_sink: Sink::Server {
                events: server_events,
                taken: taken.clone(),
            },
        };
        tokio::spawn(driver::run(config, command_rx, state_tx));
        Ok(Client {
            commands,
            state,
            publish_slots: Arc::new(Semaphore::new(self.publish_queue)),
            rpc_slots: Arc::new(Semaphore::new(self.publish_queue)),
            publish_queue: self.publish_queue,
            server_events: Arc::new(Mutex::new(Some(server_rx))),
            server_events_taken: taken,
            keys: Arc::new(KeyGen {
                prefix: fastrand::u64(..),
                next: AtomicU64::new(1),
            }),
            next_sub: Arc::new(AtomicU64::new(1)),
        })
    }
}

/// Commands from handles to the connection task. Bounded: publishes are
/// bounded by `publish_queue` before they get here, and a full queue only
/// makes callers wait.
const COMMAND_QUEUE: usize = 64;

/// `ws://host:port/path`; an empty path means the gateway's `/ws`.
fn parse_url(url: &str) -> Result<http::Uri, Error> {
    let bad = |why: &str| Error::InvalidUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => {}
        _ => {
            return Err(bad(
                "expected a ws:// or wss:// URL such as ws://127.0.0.1:8080/ws",
            ))
        }
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    if matches!(uri.path(), "" | "/") {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let scheme = uri.scheme_str().unwrap_or("ws");
        return format!("{scheme}://{authority}/ws{query}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()));
    }
    Ok(uri)
}

/// Idempotency keys: a random per-client prefix and a counter, so keys are
/// unique across clients and processes without coordination.
struct KeyGen {
    prefix: u64,
    next: AtomicU64,
}

impl KeyGen {
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n}", self.prefix)
    }
}

/// A handle to a reconnecting Tether connection. Cheap to clone; the
/// connection closes when the last clone is dropped or [`Client::close`] is
/// called.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<State>,
    publish_slots: Arc<Semaphore>,
    rpc_slots: Arc<Semaphore>,
    publish_queue: usize,
    /// The server-side subscriptions' stream, until the application takes it.
    server_events: Arc<Mutex<Option<mpsc::Receiver<ServerEvent>>>>,
    server_events_taken: Arc<AtomicBool>,
    keys: Arc<KeyGen>,
    next_sub: Arc<AtomicU64>,
}

impl Client {
    /// Options for a client of the gateway at `url` (`ws://host:port/ws`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            backoff: Backoff::default(),
            max_attempts: None,
            token: None,
            refresher: None,
            publish_queue: 1024,
            subscription_buffer: 1024,
            connect_timeout: Duration::from_secs(10),
            idempotency_window: tether_protocol::DEFAULT_IDEMPOTENCY_WINDOW,
            jitter: Arc::new(fastrand::f64),
            extra_roots: Vec::new(),
            connect_data: None,
        }
    }

    /// The connection state; `changed().await` on it to follow transitions.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Subscribes to `channel`. The subscription survives reconnects: it is
    /// restored with recovery from its last offset each time.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, Error> {
        tether_protocol::message::validate_channel(channel).map_err(Error::InvalidChannel)?;
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Subscribe {
            channel: channel.to_owned(),
            id,
            reply,
        })
        .await?;
        let events = answer.await.map_err(|_| self.ended())??;
        Ok(Subscription {
            channel: channel.to_owned(),
            id,
            events,
            commands: self.commands.downgrade(),
            state: self.state.clone(),
        })
    }

    /// Publishes `data` to `channel` and waits for the server's ack; returns
    /// the publication's offset.
    ///
    /// While disconnected the publish waits in the client's bounded queue and
    /// is sent after the reconnect; an unacknowledged publish is resent with
    /// the same idempotency key, so it is stored once — within the
    /// server's idempotency window (see [`ClientBuilder::idempotency_window`]);
    /// past it the publish fails with [`Error::IdempotencyWindowExpired`]. Wrap the call in a
    /// timeout to bound the wait; a publish whose caller gave up may still be
    /// delivered.
    pub async fn publish(&self, channel: &str, data: serde_json::Value) -> Result<u64, Error> {
        tether_protocol::message::validate_channel(channel).map_err(Error::InvalidChannel)?;
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| Error::InvalidData(e.to_string()))?;
        let permit = self
            .publish_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::QueueFull {
                capacity: self.publish_queue,
            })?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Publish(Pending {
            channel: channel.to_owned(),
            data,
            key: self.keys.next(),
            reply,
            permit,
            sent_as: None,
            first_sent: None,
        }))
        .await?;
        answer.await.map_err(|_| self.ended())?
    }

    /// Who is present in `channel` (its rule must say `presence = true`;
    /// docs/presence.md), oldest join first. The server answers a client
    /// subscribed to the channel, or one whose token's `presence` claim
    /// names it; others get [`Error::Server`] with `forbidden`, and a
    /// channel without presence `bad_request`.
    ///
    /// Sent and awaited as [`Subscription::presence`] is: it waits while
    /// disconnected and is sent after the reconnect (behind the
    /// resubscribes); wrap it in a timeout to bound the wait.
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, Error> {
        ask_presence(&self.commands, &self.state, channel).await
    }

    /// How many clients and distinct users are present in `channel`; asked
    /// as [`Client::presence`] is.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, Error> {
        ask_presence_stats(&self.commands, &self.state, channel).await
    }

    /// Closes the connection with 1000 and stops reconnecting. Pending
    /// publishes and presence requests fail with [`Error::Closed`];
    /// subscriptions end.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| matches!(s, State::Disconnected { .. }))
            .await;
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| self.ended())
    }

    fn ended(&self) -> Error {
        ended(&self.state)
    }
}

/// The error for a request the stopped connection task cannot answer.
fn ended(state: &watch::Receiver<State>) -> Error {
    match &*state.borrow() {
        State::Disconnected { code, reason } if *code != 1000 => Error::Disconnected {
            code: *code,
            reason: reason.clone(),
        },
        _ => Error::Closed,
    }
}

/// Sends a presence request to the connection task and awaits its answer.
async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    state: &watch::Receiver<State>,
    channel: &str,
    ask: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Ask,
) -> Result<T, Error> {
    tether_protocol::message::validate_channel(channel).map_err(Error::InvalidChannel)?;
    let (reply, answer) = oneshot::channel();
    let request = PresenceRequest {
        channel: channel.to_owned(),
        ask: ask(reply),
        sent_as: None,
    };
    commands
        .send(Command::Presence(request))
        .await
        .map_err(|_| ended(state))?;
    answer.await.map_err(|_| ended(state))?
}

async fn ask_presence(
    commands: &mpsc::Sender<Command>,
    state: &watch::Receiver<State>,
    channel: &str,
) -> Result<Vec<PresenceEntry>, Error> {
    ask(commands, state, channel, Ask::List).await
}

async fn ask_presence_stats(
    commands: &mpsc::Sender<Command>,
    state: &watch::Receiver<State>,
    channel: &str,
) -> Result<PresenceStats, Error> {
    ask(commands, state, channel, Ask::Stats).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| parse_url(u).map(|u| u.to_string()).unwrap_or_default();
        assert_eq!(ok("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
        assert_eq!(ok("ws://127.0.0.1:8080/"), "ws://127.0.0.1:8080/ws");
        assert_eq!(ok("ws://h:1/custom"), "ws://h:1/custom");
        assert!(parse_url("http://h/ws").is_err());
        assert!(parse_url("wss://h/ws").is_ok());
        assert_eq!(
            parse_url("wss://h").map(|u| u.to_string()).ok().as_deref(),
            Some("wss://h/ws")
        );
        assert!(parse_url("http://h/ws").is_err());
    }

    #[test]
    fn keys_are_unique() {
        let k = KeyGen {
            prefix: 7,
            next: AtomicU64::new(1),
        };
        assert_ne!(k.next(), k.next());
    }
}
