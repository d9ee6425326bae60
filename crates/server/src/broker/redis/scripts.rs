//! What the Redis broker keeps in Redis, and the two server-side scripts
//! that change it atomically.
//!
//! Per channel `C` (with prefix `P`; the braces keep a channel's keys in one
//! Redis Cluster slot):
//!
//! - `P:{C}:m`, a hash: `e` the epoch, `o` the last offset, `r` the run id
//!   of the Redis server that wrote it. Expires after `history.meta_ttl`
//!   without a publish. A publish makes it only when told it may (the
//!   publisher's address has a new channel left, `limits.new_channel_rate_per_ip`):
//!   otherwise the script answers [`NOT_CREATED`] having written nothing,
//!   and a channel is never created for nobody's account. A channel that was only subscribed (`o` 0) holds
//!   it for its epoch alone, so that subscribers on every node agree on it
//!   before the first publication: then it expires [`EMPTY_TTL_CHECKS`]
//!   check intervals after the last node with a subscriber stopped
//!   refreshing it (`repair::run_checks`). A client that recovers from
//!   offset 0 of such an epoch after it expired gets `recovered: false`
//!   (there was nothing to miss).
//! - `P:{C}:h`, a stream of the recent publications: entry id `<offset>-0`,
//!   fields `d` (the data) and `t` (publish time, ms). At most
//!   `history.size` entries; expires `history.ttl` after the last publish,
//!   and entries older than that are not replayed (both as the channel's
//!   `[[channels]]` rule sets them, passed to the scripts per call).
//! - `P:{C}:k:<key>`: an idempotency key, `"<epoch> <offset>"`, expiring
//!   after `history.idempotency_window`.
//! - `P:{C}`: the pub/sub channel; each message is `<epoch> <offset> <data>`.
//!
//! **Epochs that cannot lie.** Both scripts fence the channel on the Redis
//! server's run id (which a restart, a failover or a restored snapshot
//! changes): a hash written under another run id, or missing, starts a new
//! epoch with an empty history. A client holding a position in the old
//! epoch can then only ever get `recovered: false` — never publications that
//! reuse offsets it has already seen with other data.

use redis::Script;
use std::sync::LazyLock;

/// The fence both scripts start with: returns the channel's epoch and top,
/// starting a new epoch when the hash is missing or from another run.
///
/// **The first write may grow memory.** Under `maxmemory` (with
/// `noeviction`) Redis refuses a script only at its first write, and only if
/// that write is one that may grow memory (`HSET`, `HINCRBY`, `XADD`, `SET`;
/// not `DEL` or `PEXPIRE`): after any other write it lets the rest through.
/// So every path through both scripts writes such a command first — here
/// `HSET` before `DEL`, in `PUBLISH` `HINCRBY` — and a full Redis refuses
/// the whole script (`OOM`) with nothing changed.
pub(super) const FENCE: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'e', 'o', 'r')
local epoch, top = meta[1], tonumber(meta[2])
if (not epoch) or meta[3] ~= ARGV[1] then
  epoch, top = ARGV[2], 0
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
";

/// What the publish script may not create: run before [`FENCE`], so a
/// channel whose meta hash is missing (never published, expired, or
/// forgotten) is refused with nothing read further or written when
/// `ARGV[10]` (may create) is not `1`. A hash from another run is no
/// creation: the channel exists for its users, and the fence only starts
/// its new epoch.
const CREATE_GATE: &str = r"
local creates = redis.call('EXISTS', KEYS[1]) == 0
if creates and ARGV[10] ~= '1' then return {'', 0, 3} end
";

/// The publish script's status (its answer's third element).
pub const STORED: u8 = 0;
/// An earlier publish with the same idempotency key was found.
pub const DUPLICATE: u8 = 1;
/// Stored, and the channel's meta hash was made by this publish.
pub const CREATED: u8 = 2;
/// The channel has no meta hash and the publish may not create one:
/// nothing was written.
pub const NOT_CREATED: u8 = 3;

/// KEYS: meta, history[, idempotency key].
/// ARGV: run id, fresh epoch, meta ttl ms, data, history size, history ttl
/// ms, idempotency window ms, now ms, pub/sub channel, may create (0|1).
/// Returns `{epoch, offset, status}`, the status one of [`STORED`],
/// [`DUPLICATE`], [`CREATED`], [`NOT_CREATED`] (then epoch and offset are
/// `''` and 0).
const PUBLISH: &str = r"
if #KEYS == 3 then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local e, o = string.match(seen, '^(%S+) (%d+)$')
    if e == epoch then return {epoch, tonumber(o), 1} end
  end
end
top = redis.call('HINCRBY', KEYS[1], 'o', 1)
local size = tonumber(ARGV[5])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, top .. '-0', 'd', ARGV[4], 't', ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #KEYS == 3 then
  redis.call('SET', KEYS[3], epoch .. ' ' .. top, 'PX', ARGV[7])
end
redis.call('PUBLISH', ARGV[9], epoch .. ' ' .. top .. ' ' .. ARGV[4])
if creates then return {epoch, top, 2} end
return {epoch, top, 0}
";

/// KEYS: meta, history. ARGV: run id, fresh epoch, empty ttl ms (the meta
/// of a channel never published: created or extended to it), since epoch
/// ('' for none), since offset, history ttl ms, now ms, byte budget, most
/// entries per page, entries of the first page.
/// Returns `{epoch, top, recovered (0|1), {data...}}`; the data are the
/// publications after `since`, in order, when recovered: as many as fit in
/// the budget (at least one), read from history in pages of at most
/// [`RECOVER_PAGE`] entries: a first page of [`RECOVER_FIRST_PAGE`] (the
/// sizes are not known yet), then about what is left of the budget at the
/// entries' average size, so a read never goes much past the budget even
/// when every entry is near the largest message size.
const RECOVER: &str = r"
if top == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT') end
local since_epoch, since = ARGV[4], tonumber(ARGV[5])
if since_epoch == '' or since_epoch ~= epoch or since > top then
  return {epoch, top, 0, {}}
end
if since == top then return {epoch, top, 1, {}} end
local oldest = tonumber(ARGV[7]) - tonumber(ARGV[6])
local budget, most, page = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local out, used, from = {}, 0, '(' .. since .. '-0'
while true do
  local entries = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', page)
  if #out == 0 and (#entries == 0 or tonumber(string.match(entries[1][1], '^(%d+)')) ~= since + 1) then
    return {epoch, top, 0, {}}
  end
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    local data, at = '', nil
    for j = 1, #fields, 2 do
      if fields[j] == 'd' then data = fields[j + 1] elseif fields[j] == 't' then at = tonumber(fields[j + 1]) end
    end
    if #out == 0 and (at == nil or at < oldest) then return {epoch, top, 0, {}} end
    if #out > 0 and used + #data > budget then return {epoch, top, 1, out} end
    used = used + #data
    out[#out + 1] = data
  end
  if #entries < page then return {epoch, top, 1, out} end
  from = '(' .. entries[#entries][1]
  page = math.max(1, math.min(most, math.floor((budget - used) * #out / math.max(used, 1)) + 1))
end
";

/// History entries the recover script reads at a time, at most.
pub const RECOVER_PAGE: usize = 16;
/// History entries the recover script reads first (4 × 64 KiB at most).
pub const RECOVER_FIRST_PAGE: usize = 4;

/// The meta hash of a channel that was never published lives this many
/// check intervals after the last refresh by a node with a subscriber.
pub const EMPTY_TTL_CHECKS: u32 = 10;

pub static PUBLISH_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{CREATE_GATE}{FENCE}{PUBLISH}")));
pub static RECOVER_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{FENCE}{RECOVER}")));

/// The key names of one channel.
pub struct Keys {
    pub meta: String,
    pub history: String,
    /// The pub/sub channel.
    pub topic: String,
}

impl Keys {
    pub fn new(prefix: &str, channel: &str) -> Self {
        Keys {
            meta: format!("{prefix}:{{{channel}}}:m"),
            history: format!("{prefix}:{{{channel}}}:h"),
            topic: format!("{prefix}:{{{channel}}}"),
        }
    }

    pub fn idempotency(prefix: &str, channel: &str, key: &str) -> String {
        format!("{prefix}:{{{channel}}}:k:{key}")
    }

    /// The channel a pub/sub topic belongs to, if it is one of ours.
    pub fn channel_of<'t>(prefix: &str, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(prefix)?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }
}

/// A pub/sub message: `<epoch> <offset> <data>`.
pub fn parse_message(payload: &str) -> Option<(&str, u64, &str)> {
    let (epoch, rest) = payload.split_once(' ')?;
    let (offset, data) = rest.split_once(' ')?;
    Some((epoch, offset.parse().ok()?, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_topics_name_their_channel() {
        let k = Keys::new("tether", "news/eu");
        assert_eq!(k.meta, "tether:{news/eu}:m");
        assert_eq!(k.history, "tether:{news/eu}:h");
        assert_eq!(Keys::channel_of("tether", &k.topic), Some("news/eu"));
        assert_eq!(Keys::channel_of("other", &k.topic), None);
        assert_eq!(Keys::idempotency("tether", "c", "abc"), "tether:{c}:k:abc");
    }

    #[test]
    fn messages_split_into_epoch_offset_and_data() {
        assert_eq!(
            parse_message("e1 42 {\"a\": \"b c\"}"),
            Some(("e1", 42, "{\"a\": \"b c\"}"))
        );
        assert_eq!(parse_message("e1 x 1"), None);
        assert_eq!(parse_message("e1"), None);
    }
}
