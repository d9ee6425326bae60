//! Remote procedure calls answered by the backend's rpc hook
//! (docs/hooks.md): `{"type":"rpc","id":N,"method":"..","data":..}`,
//! answered `{"type":"rpc","id":N,"result":..}` or an `error`.
//!
//! Queued like a publish while disconnected and sent after the reconnect,
//! behind the resubscribes, resent publishes and presence requests. Unlike
//! a publish, an rpc has no idempotency key: once written to a connection
//! it may have had its effect, so one whose connection ends before the
//! answer is not sent again but fails with [`Error::ConnectionLost`], and
//! the application decides whether calling it again is safe.

use crate::{
    driver::{Command, Core},
    handshake::Ws,
    reconnect::Ended,
    session::send,
    Client, Error,
};
use serde_json::value::RawValue;
use std::time::Duration;
use tether_protocol::{ClientMessage, ErrorCode};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// An rpc waiting to be sent or answered. It holds its slot in the bounded
/// rpc queue (`permit`) until then.
pub(crate) struct RpcCall {
    pub method: String,
    pub data: Box<RawValue>,
    pub reply: oneshot::Sender<Result<Box<RawValue>, Error>>,
    #[allow(dead_code)] // held, not read: dropping it frees the slot
    pub permit: OwnedSemaphorePermit,
    /// The request id on the current connection, once sent.
    pub sent_as: Option<u64>,
}

impl Client {
    /// Calls `method` on the backend's rpc hook (docs/hooks.md) with `data`
    /// (`Value::Null` for none) and returns its `result`, raw (parse it with
    /// `serde_json::from_str(result.get())`).
    ///
    /// While disconnected the call waits in a bounded queue (as large as
    /// the publish queue; full: [`Error::RpcQueueFull`]) and is sent after
    /// the reconnect. Once sent it is **not sent again**: an rpc has no
    /// idempotency key, and the backend may have acted on it, so a call
    /// whose connection ends before the answer fails with
    /// [`Error::ConnectionLost`] — call again if the method is safe to
    /// repeat. The backend's refusal, or the server's when the backend is
    /// slow, down or wrong, is [`Error::Server`]; after a
    /// [retryable](crate::is_retryable) code (`unavailable`, `internal`,
    /// `over_capacity`) nothing reached the backend or it failed: call
    /// again with backoff. Wrap the call in a timeout to bound the wait;
    /// an rpc whose caller gave up before it was sent is not sent.
    pub async fn rpc(&self, method: &str, data: serde_json::Value) -> Result<Box<RawValue>, Error> {
        tether_protocol::message::validate_rpc_method(method).map_err(Error::InvalidMethod)?;
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| Error::InvalidData(e.to_string()))?;
        let permit =
            self.rpc_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| Error::RpcQueueFull {
                    capacity: self.publish_queue,
                })?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Rpc(RpcCall {
            method: method.to_owned(),
            data,
            reply,
            permit,
            sent_as: None,
        }))
        .await?;
        answer.await.map_err(|_| self.ended())?
    }
}

impl RpcCall {
    /// The encoded size of its request, to find the largest after a 1009.
    pub(crate) fn size(&self) -> usize {
        self.method.len() + self.data.get().len()
    }
}

impl Core {
    /// Queues an rpc (sent after the next connect).
    pub(crate) fn queue_rpc(&mut self, call: RpcCall) {
        // A caller that gave up before it was sent: nothing to send.
        self.rpcs
            .retain(|c| c.sent_as.is_some() || !c.reply.is_closed());
        self.rpcs.push_back(call);
    }

    /// Queues an rpc and sends it on the live connection `ws`.
    pub(crate) async fn call_rpc(
        &mut self,
        ws: &mut Ws,
        call: RpcCall,
        limit: Duration,
    ) -> Result<(), Ended> {
        self.queue_rpc(call);
        self.send_rpc(ws, self.rpcs.len() - 1, limit).await
    }

    /// After (re)connecting, last: every rpc still waiting to be sent.
    pub(crate) async fn send_rpcs(&mut self, ws: &mut Ws, limit: Duration) -> Result<(), Ended> {
        self.rpcs
            .retain(|c| c.sent_as.is_some() || !c.reply.is_closed());
        for i in 0..self.rpcs.len() {
            if self.rpcs[i].sent_as.is_none() {
                self.send_rpc(ws, i, limit).await?;
            }
        }
        Ok(())
    }

    async fn send_rpc(&mut self, ws: &mut Ws, index: usize, limit: Duration) -> Result<(), Ended> {
        let id = self.request_id();
        let Some(call) = self.rpcs.get_mut(index) else {
            return Ok(());
        };
        call.sent_as = Some(id);
        let msg = ClientMessage::Rpc {
            id,
            method: call.method.clone(),
            data: call.data.clone(),
        };
        send(ws, &msg, limit).await
    }

    /// Settles the rpc sent as `id`; false when no rpc has that id.
    pub(crate) fn rpc_answer(&mut self, id: u64, answer: Result<Box<RawValue>, Error>) -> bool {
        let Some(i) = self.rpcs.iter().position(|c| c.sent_as == Some(id)) else {
            return false;
        };
        if let Some(call) = self.rpcs.remove(i) {
            let _ = call.reply.send(answer);
        }
        true
    }

    /// The rpc sent as `id` was refused with `code`; false when no rpc has that id.
    pub(crate) fn rpc_refused(&mut self, id: u64, code: ErrorCode, message: String) -> bool {
        self.rpc_answer(id, Err(Error::Server { code, message }))
    }

    /// The connection ended: every rpc sent on it fails (it may have had
    /// its effect, so it is not sent again); those not yet sent wait for the
    /// next connection.
    pub(crate) fn rpcs_lost(&mut self, reason: &str) {
        let (lost, kept) = std::mem::take(&mut self.rpcs)
            .into_iter()
            .partition(|c| c.sent_as.is_some());
        self.rpcs = kept;
        for call in Vec::from(lost) {
            let _ = call.reply.send(Err(Error::ConnectionLost {
                reason: reason.to_owned(),
            }));
        }
    }
}
