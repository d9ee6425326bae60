//! What presence keeps in Redis, and the scripts that change and read it
//! atomically.
//!
//! Per channel `C` (prefix `P`; in the channel's Cluster slot, beside its
//! meta hash):
//!
//! - `P:{C}:pz`, a sorted set: client id → the time (Redis's clock, ms)
//!   its entry expires unless its node refreshes it.
//! - `P:{C}:ph`, a hash: client id → its entry, as the `presence` answer
//!   shows it (JSON).
//! - `P:{C}:pu`, a hash: user → how many of its clients are present (so
//!   `presence_stats` is O(1)).
//!
//! Every script that writes them sets all three to expire after twice the
//! presence TTL, so Redis memory is bounded even when every node is gone.
//! The three change together, only in these scripts: a client is in `pz`
//! exactly when it is in `ph`, and `pu` counts the users of `ph`.
//!
//! **Expiry.** An entry whose time has passed is no longer present: reads
//! count and list only live ones, and every script that touches the
//! channel first removes up to [`CLEAN_MOST`] expired ones (their `leave`
//! announced). Times are Redis's (`TIME`), so nodes' clocks do not matter.
//!
//! **Announcing.** With `join_leave`, a script PUBLISHes a join or a leave
//! on the channel's pub/sub topic as `! <epoch> <after> J|L <entry>`,
//! `after` being the channel's offset when it ran (the publication it came
//! after): publications are `<epoch> <offset> <data>`, so the `!` tells
//! them apart. A join is announced only by the script that added the entry,
//! a leave only by the one that removed it — exactly once each, whichever
//! node removes it (its own, or any node cleaning it after it expired).
//! The epoch comes from the publish script's fence, run when something is
//! announced (a channel whose meta hash is missing or from another Redis
//! run starts a new epoch there, as a publish would).

use super::scripts::FENCE;
use redis::{Script, ScriptInvocation};
use std::sync::LazyLock;

/// Expired entries one script call removes at most (a node that died with
/// many clients in one channel is cleaned over a few calls).
pub const CLEAN_MOST: usize = 10_000;
/// Clients one refresh or write call names at most.
pub const CLIENTS_PER_CALL: usize = 1_000;

/// KEYS: meta, history, pz, ph, pu. ARGV: run id, fresh epoch, empty ttl
/// ms (the fence's), presence ttl ms, keys' ttl ms, pub/sub topic,
/// announce (0|1), then the script's own.
const COMMON: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local live = string.format('%d', now)
local expiry = string.format('%d', now + tonumber(ARGV[4]))
local announce = ARGV[7] == '1'
local epoch, top
local function tell(kind, entry)
  if not announce then return end
  if not epoch then epoch, top = fence() end
  redis.call('PUBLISH', ARGV[6], '! ' .. epoch .. ' ' .. string.format('%d', top) .. ' ' .. kind .. ' ' .. entry)
end
local function user_of(entry)
  local ok, e = pcall(cjson.decode, entry)
  if ok and type(e) == 'table' and type(e.user) == 'string' then return e.user end
  return nil
end
local function count_user(user, by)
  if not user then return end
  if redis.call('HINCRBY', KEYS[5], user, by) <= 0 then redis.call('HDEL', KEYS[5], user) end
end
local function forget(client)
  redis.call('ZREM', KEYS[3], client)
  local entry = redis.call('HGET', KEYS[4], client)
  if not entry then return nil end
  redis.call('HDEL', KEYS[4], client)
  count_user(user_of(entry), -1)
  return entry
end
local function put(client, entry)
  redis.call('ZADD', KEYS[3], expiry, client)
  local old = redis.call('HGET', KEYS[4], client)
  redis.call('HSET', KEYS[4], client, entry)
  if old then count_user(user_of(old), -1) end
  count_user(user_of(entry), 1)
  return not old
end
local function clean()
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. live, 'LIMIT', 0, CLEAN_MOST)
  for _, client in ipairs(gone) do
    local entry = forget(client)
    if entry then tell('L', entry) end
  end
end
local function keep()
  for i = 3, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
end
";

/// Joins and leaves of one channel, in the order they happened. ARGV[8..]:
/// triples `A|R`, client, entry (`''` for `R`). An add of a client already
/// present replaces its entry without a second `join`; a remove of one not
/// present (it expired, and whoever cleaned it announced its leave) does
/// nothing. Returns 0.
///
/// The first write is `ZADD` or `ZREM`: a full Redis (`maxmemory`) refuses
/// a call that starts with an add, with nothing changed.
const APPLY: &str = r"
for i = 8, #ARGV, 3 do
  local client, entry = ARGV[i + 1], ARGV[i + 2]
  if ARGV[i] == 'A' then
    if put(client, entry) then tell('J', entry) end
  else
    local gone = forget(client)
    if gone then tell('L', gone) end
  end
end
keep()
return 0
";

/// A node's refresh of its clients in one channel. ARGV[8..]: client ids.
/// Cleans first (an entry of this node that expired while it was cut off
/// gets its leave like any other), then moves the expiry of those still
/// present; returns the ones that are not (the node adds them again, with
/// a join).
const REFRESH: &str = r"
clean()
local missing = {}
if #ARGV >= 8 then
  local clients = {unpack(ARGV, 8)}
  local scores = redis.call('ZMSCORE', KEYS[3], unpack(clients))
  local again = {}
  for i, client in ipairs(clients) do
    if scores[i] then
      again[#again + 1] = expiry
      again[#again + 1] = client
    else
      missing[#missing + 1] = client
    end
  end
  if #again > 0 then redis.call('ZADD', KEYS[3], 'XX', unpack(again)) end
end
keep()
return missing
";

/// Who is present. ARGV[8]: the most to list. Returns `{count, entries}`,
/// the entries (live ones, in no order) only when at most that many.
const READ: &str = r"
clean()
local n = redis.call('ZCOUNT', KEYS[3], live, '+inf')
if n == 0 or n > tonumber(ARGV[8]) then return {n, {}} end
local clients = redis.call('ZRANGEBYSCORE', KEYS[3], live, '+inf')
local entries = {}
for i = 1, #clients, 1000 do
  local part = redis.call('HMGET', KEYS[4], unpack(clients, i, math.min(i + 999, #clients)))
  for j = 1, #part do entries[#entries + 1] = part[j] end
end
return {n, entries}
";

/// How many clients and users are present: `{clients, users}`.
const STATS: &str = r"
clean()
return {redis.call('ZCOUNT', KEYS[3], live, '+inf'), redis.call('HLEN', KEYS[5])}
";

/// A presence script: the fence as a function, the common part, then the
/// script's own.
fn script(own: &str) -> Script {
    let common = COMMON.replace("CLEAN_MOST", &CLEAN_MOST.to_string());
    Script::new(&format!(
        "local function fence()\n{FENCE}\nreturn epoch, top\nend\n{common}{own}"
    ))
}

pub static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(APPLY));
pub static REFRESH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(REFRESH));
pub static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(READ));
pub static STATS_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(STATS));

/// What every presence call passes besides the channel.
pub struct Common<'a> {
    pub prefix: &'a str,
    pub run_id: &'a str,
    /// The fence's TTL for a meta hash it makes (a channel not published).
    pub empty_ttl_ms: u64,
    pub ttl_ms: u64,
    /// Whether the channel's rule says `join_leave`.
    pub announce: bool,
}

/// A call of `script` on `channel`'s presence, ready for its own ARGV.
pub fn invocation(
    script: &'static Script,
    channel: &str,
    common: &Common<'_>,
) -> ScriptInvocation<'static> {
    let keys = super::scripts::Keys::new(common.prefix, channel);
    let mut call = script.prepare_invoke();
    call.key(&keys.meta).key(&keys.history);
    for suffix in ["pz", "ph", "pu"] {
        call.key(presence_key(common.prefix, channel, suffix));
    }
    call.arg(common.run_id)
        .arg(super::Inner::fresh_epoch())
        .arg(common.empty_ttl_ms)
        .arg(common.ttl_ms)
        .arg(common.ttl_ms.saturating_mul(2))
        .arg(&keys.topic)
        .arg(u8::from(common.announce));
    call
}

/// `P:{C}:pz`, `P:{C}:ph` or `P:{C}:pu`.
pub fn presence_key(prefix: &str, channel: &str, suffix: &str) -> String {
    format!("{prefix}:{{{channel}}}:{suffix}")
}

/// A join or leave as the pub/sub topic carries it.
#[derive(Debug, PartialEq, Eq)]
pub struct Announced<'a> {
    pub epoch: &'a str,
    pub after: u64,
    pub join: bool,
    /// The entry, JSON.
    pub entry: &'a str,
}

/// `! <epoch> <after> J|L <entry>`; `None` for anything else (a
/// publication, or a malformed event).
pub fn parse_event(payload: &str) -> Option<Announced<'_>> {
    let rest = payload.strip_prefix("! ")?;
    let (epoch, rest) = rest.split_once(' ')?;
    let (after, rest) = rest.split_once(' ')?;
    let (kind, entry) = rest.split_once(' ')?;
    let join = match kind {
        "J" => true,
        "L" => false,
        _ => return None,
    };
    Some(Announced {
        epoch,
        after: after.parse().ok()?,
        join,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart_from_publications() {
        assert_eq!(
            parse_event("! 00ab 7 J {\"client\":\"a b\"}"),
            Some(Announced {
                epoch: "00ab",
                after: 7,
                join: true,
                entry: "{\"client\":\"a b\"}"
            })
        );
        assert_eq!(parse_event("! e 0 L {}").map(|a| a.join), Some(false));
        // A publication's epoch is 16 hex digits, never `!`.
        assert_eq!(parse_event("00000000000000ab 7 {\"a\":1}"), None);
        assert_eq!(parse_event("! e x J {}"), None);
        assert_eq!(parse_event("! e 1 X {}"), None);
        assert_eq!(parse_event("! e 1"), None);
    }

    #[test]
    fn presence_keys_share_the_channel_slot() {
        assert_eq!(presence_key("tether", "room:1", "pz"), "tether:{room:1}:pz");
        let script = script(READ);
        assert!(!script.get_hash().is_empty());
    }
}
