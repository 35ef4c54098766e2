//! The Lua script every decision runs, and how its arguments and replies are laid out.
//!
//! A key is one Redis hash: field `at` is the server time (µs) of its last write, and one field per
//! tier holds that tier's debt: how many nanoseconds of schedule it is ahead of `at` (the GCRA's
//! TAT minus `at`). Debts rather than absolute TATs keep every number an exact integer in Lua's
//! doubles: a debt never exceeds the tier's window (at most 2^53 ns, about 104 days, checked when
//! the limiter is built), where nanoseconds since 1970 would not fit.
//!
//! A tier's field is named after its parameters (`r:<interval ns>:<window ns>`), so a process
//! running a changed quota does not read another tier's debt as its own.
//!
//! A calendar tier's field holds what its period has spent, in units, and does not decay: it is
//! named after the period (`C:<period index>:<limit>`), so a new period starts from a field never
//! written. The field two periods back is deleted when the current one is written, leaving the
//! last period's in place for a process whose clock is a little behind.

use crate::quota::Tier;

/// The script. Arguments: `ARGV[1]` is the operation, `ARGV[2]` the lease batch (lease only), then
/// per key: its tier count, then per tier: field, cost (signed for `adjust`; ns, or units for a
/// calendar tier), window (ns, or a calendar tier's limit), and milliseconds until the calendar
/// period ends (0 for a rolling tier), then for a calendar tier the field to delete.
///
/// Operations:
/// - `a` admit: every tier of every key must have room for its cost, or nothing changes.
///   Reply `{1}` or `{0, key, tier, wait_ns, debt}` (1-based indices; the longest wait; that
///   tier's debt before the call).
/// - `c` check: as admit, changing nothing.
/// - `l` lease: admit as many calls as fit, up to the batch. Reply `{1, granted}` or as admit.
/// - `d` adjust: add each (signed) cost to its debt, into debt or down to zero. Reply `{1}`.
/// - `s` status: the debts of the one key, changing nothing. Reply `{d1, d2, ...}`.
pub(super) const SOURCE: &str = r#"
-- tollgate rate limiter v2: GCRA per tier, as nanoseconds of debt since the key's last write;
-- calendar tiers as units spent in the period their field names.
-- ARGV: op (a admit, c check, l lease, d adjust, s status), lease batch, then per key: tier count,
-- then per tier: field, cost, window, ms until the period ends (0: rolling) [, stale field].
local op = ARGV[1]
local batch = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local MAX_DEBT = 9007199254740991
local KEEP_MS = 3600000
local pos = 3
local keys = {}
local wait, wait_key, wait_tier, wait_debt = 0, 0, 0, 0
local grant = batch
for k = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local fields, costs, windows, ends, stale = {}, {}, {}, {}, {}
  for i = 1, n do
    fields[i] = ARGV[pos]
    costs[i] = tonumber(ARGV[pos + 1])
    windows[i] = tonumber(ARGV[pos + 2])
    ends[i] = tonumber(ARGV[pos + 3])
    pos = pos + 4
    if ends[i] > 0 then
      stale[#stale + 1] = ARGV[pos]
      pos = pos + 1
    end
  end
  local stored = redis.call('HMGET', KEYS[k], 'at', unpack(fields))
  local elapsed = 0
  local at = tonumber(stored[1])
  if at and now > at then elapsed = (now - at) * 1000 end
  local debts = {}
  for i = 1, n do
    local debt = tonumber(stored[i + 1]) or 0
    if ends[i] == 0 then debt = debt - elapsed end
    if debt < 0 then debt = 0 end
    debts[i] = debt
    local cost = costs[i]
    if op ~= 'd' and op ~= 's' and cost > 0 then
      local ahead = debt + cost - windows[i]
      -- A calendar tier has room again only when its period ends.
      if ends[i] > 0 and ahead > 0 then ahead = ends[i] * 1000000 end
      if ahead > wait then
        wait, wait_key, wait_tier, wait_debt = ahead, k, i, debt
      end
      if op == 'l' then
        local room = math.floor((windows[i] - debt) / cost)
        if room < grant then grant = room end
      end
    end
  end
  keys[k] = {fields, costs, debts, ends, stale}
end
if op == 's' then
  return keys[1][3]
end
if wait_key > 0 then
  return {0, wait_key, wait_tier, wait, wait_debt}
end
if op == 'c' then
  return {1}
end
local times = 1
if op == 'l' then times = grant end
for k = 1, #KEYS do
  local fields, costs, debts, ends, stale = keys[k][1], keys[k][2], keys[k][3], keys[k][4], keys[k][5]
  local args = {'at', string.format('%.0f', now)}
  local expire = 0
  for i = 1, #fields do
    local debt = debts[i] + costs[i] * times
    if debt < 0 then debt = 0 end
    if debt > MAX_DEBT then debt = MAX_DEBT end
    args[#args + 1] = fields[i]
    args[#args + 1] = string.format('%.0f', debt)
    local keep = 0
    if ends[i] > 0 then
      if debt > 0 then keep = ends[i] + KEEP_MS end
    else
      keep = math.ceil(debt / 1000000)
    end
    if keep > expire then expire = keep end
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[k], unpack(stale))
  end
  if expire == 0 then
    redis.call('DEL', KEYS[k])
  else
    redis.call('HSET', KEYS[k], unpack(args))
    redis.call('PEXPIRE', KEYS[k], expire)
  end
end
if op == 'l' then
  return {1, grant}
end
return {1}
"#;

/// The largest debt a tier may hold, and so its largest window: 2^53 − 1 ns, the largest integer
/// a Lua number holds exactly.
pub(super) const MAX_WINDOW_NANOS: u64 = (1 << 53) - 1;

/// One operation of the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Admit,
    Check,
    Lease(u32),
    Adjust,
    Status,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Self::Admit => "a",
            Self::Check => "c",
            Self::Lease(_) => "l",
            Self::Adjust => "d",
            Self::Status => "s",
        }
    }
}

/// What the script said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// Admitted (for a lease: this many calls).
    Admitted(u64),
    /// Refused: the key and tier (0-based) with the longest wait, the wait in ns, and that
    /// tier's debt before the call (for a calendar tier, what its period has spent).
    Refused {
        key: usize,
        tier: usize,
        wait: u64,
        debt: u64,
    },
    /// Per-tier debts in ns (status).
    Debts(Vec<u64>),
}

/// The arguments of one invocation, built once per call.
pub(super) struct Invocation {
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Arg>,
}

/// One argument: numbers and field names stay numbers until redis-rs writes them, so building a
/// call allocates only its key names.
pub(super) enum Arg {
    Code(&'static str),
    Field(super::keys::Field),
    Number(i128),
}

impl redis::ToRedisArgs for Arg {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        match self {
            Self::Code(code) => out.write_arg(code.as_bytes()),
            Self::Field(field) => field.write_redis_args(out),
            Self::Number(number) => number.write_redis_args(out),
        }
    }
}

impl Invocation {
    pub(super) fn new(op: Op) -> Self {
        let batch = match op {
            Op::Lease(batch) => batch,
            _ => 0,
        };
        let mut args = Vec::with_capacity(8);
        args.extend([Arg::Code(op.code()), Arg::Number(i128::from(batch))]);
        Self {
            keys: Vec::with_capacity(1),
            args,
        }
    }

    /// Adds a key and its tiers, each with what this call costs it (`cost`, signed: nanoseconds
    /// of schedule, or a calendar tier's units), at the wall time `wall` (nanoseconds since the
    /// Unix epoch) that calendar tiers read their period from.
    pub(super) fn key(
        &mut self,
        name: String,
        tiers: &[Tier],
        wall: u64,
        cost: impl Fn(&Tier) -> i128,
    ) {
        self.keys.push(name);
        self.args.push(Arg::Number(tiers.len() as i128));
        for tier in tiers {
            let cost = cost(tier);
            let window = tier.window_nanos();
            let span = tier.calendar_period().map(|calendar| calendar.span(wall));
            self.args
                .push(Arg::Field(super::keys::field(tier, span.map(|s| s.index))));
            // Beyond 2^53 a cost only needs to stay larger than any window; clamping keeps it a
            // number Lua reads exactly.
            let cost = cost.clamp(
                -(MAX_WINDOW_NANOS as i128) - 1,
                MAX_WINDOW_NANOS as i128 + 1,
            );
            self.args.push(Arg::Number(cost));
            self.args.push(Arg::Number(i128::from(window)));
            match span {
                None => self.args.push(Arg::Number(0)),
                Some(span) => {
                    let ends_ms = span.ends.saturating_sub(wall).div_ceil(1_000_000).max(1);
                    self.args.push(Arg::Number(i128::from(ends_ms)));
                    let stale = span.index.saturating_sub(2);
                    self.args
                        .push(Arg::Field(super::keys::field(tier, Some(stale))));
                }
            }
        }
    }
}

/// Reads the script's reply for `op`.
pub(super) fn parse(op: Op, reply: &[i64]) -> Result<Reply, String> {
    let non_negative = |v: i64| u64::try_from(v).map_err(|_| format!("negative value {v}"));
    if op == Op::Status {
        return reply
            .iter()
            .map(|&v| non_negative(v))
            .collect::<Result<_, _>>()
            .map(Reply::Debts);
    }
    match *reply {
        [1] if !matches!(op, Op::Lease(_)) => Ok(Reply::Admitted(1)),
        [1, granted] if matches!(op, Op::Lease(_)) => Ok(Reply::Admitted(non_negative(granted)?)),
        [0, key, tier, wait, debt] if key >= 1 && tier >= 1 => Ok(Reply::Refused {
            key: non_negative(key - 1)? as usize,
            tier: non_negative(tier - 1)? as usize,
            wait: non_negative(wait)?,
            debt: non_negative(debt)?,
        }),
        _ => Err(format!("unexpected reply {reply:?}")),
    }
}
