//! What the node registry keeps in Redis (lifecycle events with
//! `--broker redis`, docs/events.md), and the scripts that change it.
//!
//! With prefix `P`, all in one Cluster slot (`#` is in no channel name, so
//! no channel's keys can meet these):
//!
//! - `P:{#nodes}`, a hash: node id → the incarnation (random, per process
//!   life) that registered it. A node is in it from its first write until
//!   it leaves cleanly or another node claims it.
//! - `P:{#nodes}:<id>:a`, the node's liveness: its incarnation, expiring
//!   `--node-ttl` after the node's last write (it writes every ttl/3).
//! - `P:{#nodes}:<id>:s`, a hash: client id → `{"u":user,"t":started ms,
//!   "p":[presence channels]}` for each of its sessions whose disconnect
//!   the backend has not acknowledged.
//! - `P:{#nodes}:<id>:l`, written by the node that claimed it: the
//!   incarnation it declared lost, so that a node which was only cut off
//!   learns it when it comes back.
//!
//! The hash and the tombstone expire after [`KEEP`] without a write, so
//! nothing stays in Redis for ever, even with every node gone.
//!
//! **Exactly one claimer.** [`CLAIM_SCRIPT`] removes the lapsed node from
//! the hash and takes its sessions in one atomic step: of any number of
//! nodes running it for the same node, exactly one gets the sessions; the
//! others find it gone.

use redis::Script;
use std::{sync::LazyLock, time::Duration};

/// How long the registry's keys outlive their last write.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// Sessions one write carries at most (a full rewrite takes several).
pub const SESSIONS_PER_CALL: usize = 1_000;

/// The node's periodic write: its liveness, and changes to its sessions.
///
/// KEYS: nodes, alive, sessions, lost. ARGV: id, incarnation, ttl ms, mode,
/// keep ms, then (client, entry) pairs, an empty entry deleting the client.
/// Modes: `beat` (the node is registered: refresh and apply), `rebuild`
/// (register again and replace every session, unless the node was
/// claimed), `accept` (the same, after learning it was claimed), `start`
/// (a new process: register, and take what a previous life of the same id
/// left behind, to announce as lost).
///
/// Answers `{status, previous}`: 0 written, with a previous life's sessions
/// (flat client, entry pairs) for `start`; 1 the node is unknown here
/// (Redis lost its data): rebuild; 2 another node claimed this one.
pub static BEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id, inc, mode = ARGV[1], ARGV[2], ARGV[4]
local previous = {}
if mode == 'beat' then
  if redis.call('GET', KEYS[2]) ~= inc then
    if redis.call('GET', KEYS[4]) == inc then return {2, previous} end
    if redis.call('HGET', KEYS[1], id) ~= inc then return {1, previous} end
  end
  redis.call('SET', KEYS[2], inc, 'PX', ARGV[3])
else
  if mode == 'rebuild' and redis.call('GET', KEYS[4]) == inc then return {2, previous} end
  redis.call('SET', KEYS[2], inc, 'PX', ARGV[3])
  local known = redis.call('HGET', KEYS[1], id)
  if mode == 'start' and known and known ~= inc then
    previous = redis.call('HGETALL', KEYS[3])
  end
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], id, inc)
end
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[3], ARGV[i])
  else
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return {0, previous}
",
    )
});

/// Claims a lapsed node: answers its sessions (flat client, entry pairs)
/// to exactly one caller, nil to any other or while it is alive.
///
/// KEYS: nodes, its alive, its sessions, its lost. ARGV: its id, keep ms.
pub static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local inc = redis.call('HGET', KEYS[1], ARGV[1])
if not inc then return false end
redis.call('SET', KEYS[4], inc, 'PX', ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1])
local sessions = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
return sessions
",
    )
});

/// A clean exit: with no session left unacknowledged the node leaves the
/// registry (1); with some, it only drops its liveness (2), so that
/// another node claims it at its next check and sends their disconnects.
/// 0 when the registry is not this incarnation's any more.
///
/// KEYS: nodes, alive, sessions. ARGV: id, incarnation.
pub static LEAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HLEN', KEYS[3]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2], KEYS[3])
  return 1
end
redis.call('DEL', KEYS[2])
return 2
",
    )
});

/// The registry's key names.
pub struct NodeKeys {
    pub nodes: String,
    pub alive: String,
    pub sessions: String,
    pub lost: String,
}

impl NodeKeys {
    pub fn nodes(prefix: &str) -> String {
        format!("{prefix}:{{#nodes}}")
    }

    pub fn new(prefix: &str, id: &str) -> Self {
        let nodes = Self::nodes(prefix);
        NodeKeys {
            alive: format!("{nodes}:{id}:a"),
            sessions: format!("{nodes}:{id}:s"),
            lost: format!("{nodes}:{id}:l"),
            nodes,
        }
    }
}
