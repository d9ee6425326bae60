//! Subscribes refused for now: which refusals are worth retrying, and the
//! retry itself — on the same connection, after a backoff that grows with
//! each refusal in a row.
//!
//! A server answers a subscribe with `unavailable` while its broker (Redis)
//! is unreachable or reconnecting, and with `internal` or `over_capacity`
//! when it could not take the subscription just now; in each case nothing
//! was done. Dropping the subscription would make every application write
//! its own retry loop, and reconnecting would punish every other
//! subscription on the connection, so the subscription stays and asks again.
//! The same rules as the browser client (`clients/js/src/client.ts`).

use crate::{
    driver::{Core, Sub},
    handshake::Ws,
    reconnect::Ended,
    Event,
};
use std::time::Duration;
use tether_protocol::ErrorCode;
use tokio::time::Instant;
use tracing::debug;

/// The error codes after which a subscribe is retried (nothing was done and
/// asking again later can succeed). Every other code — `forbidden`,
/// `invalid_channel`, `too_many_subscriptions`, `bad_request`, ... — is a
/// final refusal: asking again would get the same answer.
pub const RETRYABLE: [ErrorCode; 3] = [
    ErrorCode::Unavailable,
    ErrorCode::Internal,
    ErrorCode::OverCapacity,
];

/// Whether the client retries a subscribe refused with `code` (see
/// [`RETRYABLE`]). Also a fair test for a publish that failed with
/// [`Error::Server`](crate::Error::Server): after these codes nothing was
/// stored and the application may publish again, with backoff.
pub fn is_retryable(code: ErrorCode) -> bool {
    code.is_retryable()
}

impl Sub {
    /// Records a retryable refusal: the retry is due after the delay for this
    /// many refusals in a row, which it returns with the 1-based attempt.
    /// The recovery position is untouched, so the retry recovers from it.
    pub(crate) fn refused_for_now(
        &mut self,
        delay: impl FnOnce(u32) -> Duration,
        now: Instant,
    ) -> (u32, Duration) {
        let delay = delay(self.refusals);
        self.refusals = self.refusals.saturating_add(1);
        self.request = None;
        self.retry_at = Some(now + delay);
        (self.refusals, delay)
    }
}

impl Core {
    /// An `error` answering request `id`, when it is a subscribe: retried
    /// later when retryable, else the subscription ends with `Refused`. An
    /// `already_subscribed` after the server made the subscription itself
    /// meanwhile is that subscription's answer (`server_subs.rs`).
    pub(crate) async fn subscribe_refused(
        &mut self,
        ws: &mut Ws,
        id: u64,
        code: ErrorCode,
        message: String,
        limit: Duration,
    ) -> Result<(), Ended> {
        let channel = self
            .subs
            .iter()
            .find(|(_, s)| s.request.is_some_and(|(r, _)| r == id))
            .map(|(c, _)| c.clone());
        let Some(channel) = channel else {
            return Ok(());
        };
        if code == ErrorCode::AlreadySubscribed && self.adopt_remade(ws, &channel, limit).await? {
            return Ok(());
        }
        if is_retryable(code) {
            return self.retry_later(ws, &channel, code, message, limit).await;
        }
        if let Some(sub) = self.subs.remove(&channel) {
            // The stream ends after this event (the sender is dropped).
            let event = Event::Refused { code, message };
            let _ = sub.events.send(&channel, event).await;
        }
        Ok(())
    }

    /// The server refused `channel`'s subscribe with a retryable code: keep
    /// the subscription, schedule the retry and tell the application.
    pub(crate) async fn retry_later(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        code: ErrorCode,
        message: String,
        limit: Duration,
    ) -> Result<(), Ended> {
        let (backoff, jitter) = (self.config.backoff, self.config.jitter.clone());
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(());
        };
        let now = Instant::now();
        let (attempt, next_delay) =
            sub.refused_for_now(|refusals| backoff.delay(refusals, jitter(), None), now);
        let at = now + next_delay;
        self.next_retry = Some(self.next_retry.map_or(at, |t| t.min(at)));
        debug!(%channel, %code, %message, attempt, delay_ms = next_delay.as_millis() as u64, "subscribe refused; retrying");
        // Scheduled before the event is handed over: an application that
        // drops the subscription on seeing it cancels the retry.
        let event = Event::RefusedWillRetry {
            code,
            message,
            attempt,
            next_delay,
        };
        self.deliver(ws, channel, event, limit).await
    }

    /// Sends the subscribes whose retry is due (with their recovery
    /// positions) and sets the next wake-up. A subscription dropped while its
    /// retry waited is forgotten: the server holds nothing to unsubscribe.
    pub(crate) async fn send_due_retries(
        &mut self,
        ws: &mut Ws,
        limit: Duration,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        let due: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in due {
            let Some(sub) = self.subs.get_mut(&channel) else {
                continue;
            };
            sub.retry_at = None;
            if sub.events.is_closed() {
                self.subs.remove(&channel);
                continue;
            }
            self.send_subscribe(ws, &channel, limit).await?;
        }
        self.next_retry = self.subs.values().filter_map(|s| s.retry_at).min();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_subs::Sink;
    use tether_protocol::{Backoff, StreamPosition};
    use tokio::sync::mpsc;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn only_nothing_done_codes_are_retried() {
        for code in [
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::OverCapacity,
        ] {
            assert!(is_retryable(code), "{code}");
        }
        for code in [
            ErrorCode::Forbidden,
            ErrorCode::InvalidChannel,
            ErrorCode::TooManySubscriptions,
            ErrorCode::BadRequest,
            ErrorCode::AlreadySubscribed,
            ErrorCode::RateLimited,
            ErrorCode::Unknown,
        ] {
            assert!(!is_retryable(code), "{code}");
        }
    }

    #[test]
    fn refusals_in_a_row_grow_the_delay_and_keep_the_position() {
        let (events, _rx) = mpsc::channel(1);
        let position = StreamPosition {
            epoch: "e".into(),
            offset: 7,
        };
        let mut sub = Sub::new(1, Sink::Own(events));
        sub.position = Some(position.clone());
        sub.request = Some((3, true));
        assert!(sub.held_by_server());
        let backoff = Backoff {
            min_delay: MS(100),
            max_delay: MS(1000),
        };
        let now = Instant::now();
        let got: Vec<(u32, Duration)> = (0..5)
            .map(|_| sub.refused_for_now(|n| backoff.delay(n, 0.5, None), now))
            .collect();
        assert_eq!(
            got,
            [
                (1, MS(50)),
                (2, MS(100)),
                (3, MS(200)),
                (4, MS(400)),
                (5, MS(500))
            ]
        );
        assert_eq!(sub.retry_at, Some(now + MS(500)));
        assert_eq!(sub.position, Some(position));
        // Waiting for the retry, the server holds nothing to unsubscribe.
        assert!(!sub.held_by_server());
    }
}
