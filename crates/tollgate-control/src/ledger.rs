//! The spend ledger: each call's usage and cost, added up per day, key, team, model and provider
//! off the call path and written in batches; and what it answers (spend grouped and totalled).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::{ErrorKind, LlmError, MicroUsd, Usage};

use crate::{
    database::Database,
    row::{get, unavailable},
};

/// One call's spend, as the gateway records it. Its names are shared (`Arc<str>`), so a call
/// hands the ledger the names it already holds without copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpendEntry {
    /// When the call ended: its UTC day is its line's.
    pub at: SystemTime,
    /// The key that made it.
    pub key_id: Arc<str>,
    /// The key's team.
    pub team: Arc<str>,
    /// The model that answered.
    pub model: Arc<str>,
    /// Its provider.
    pub provider: Arc<str>,
    /// The tokens it used, by type.
    pub usage: Usage,
    /// What it cost.
    pub cost: MicroUsd,
}

impl SpendEntry {
    /// An entry for a call that ended `at`.
    pub fn new(
        at: SystemTime,
        key_id: impl Into<Arc<str>>,
        team: impl Into<Arc<str>>,
        model: impl Into<Arc<str>>,
        provider: impl Into<Arc<str>>,
        usage: Usage,
        cost: MicroUsd,
    ) -> Self {
        Self {
            at,
            key_id: key_id.into(),
            team: team.into(),
            model: model.into(),
            provider: provider.into(),
            usage,
            cost,
        }
    }
}

/// The ledger's line: what one day (counted from 1970-01-01, UTC), key, team, model and
/// provider add up to.
type Line = (i64, Arc<str>, Arc<str>, Arc<str>, Arc<str>);

/// Usage and cost added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Totals {
    /// Calls.
    pub calls: u64,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Answer tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Micro-dollars.
    pub cost_micros: u64,
}

impl Totals {
    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_micros += other.cost_micros;
    }

    fn of(entry: &SpendEntry) -> Self {
        Self {
            calls: 1,
            input_tokens: entry.usage.input_tokens,
            cached_input_tokens: entry.usage.cached_input_tokens,
            cache_write_tokens: entry.usage.cache_write_tokens,
            output_tokens: entry.usage.output_tokens,
            reasoning_tokens: entry.usage.reasoning_tokens,
            cost_micros: entry.cost.0,
        }
    }
}

/// How the ledger writes: how often, and how much it holds while the database is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// How often the lines added up so far are written, in one transaction (default 1 s).
    pub interval: Duration,
    /// Entries waiting to be added up at most (default 65,536); past it an entry is dropped and
    /// counted, never waited for.
    pub queue: usize,
    /// Lines held unwritten at most while the database is away (default 100,000); past it a
    /// line is dropped and its calls counted.
    pub max_pending_lines: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            queue: 65_536,
            max_pending_lines: 100_000,
        }
    }
}

enum Message {
    Entry(SpendEntry),
    Flush(oneshot::Sender<Result<(), LlmError>>),
}

/// The ledger's writer: [`record`](Self::record) never waits and never fails a call; a task adds
/// entries up per line and writes them every `interval`, holding them while the database is
/// away and writing them when it returns. Clones share the task, which ends when the last clone
/// is dropped (after writing what it holds, if it can).
#[derive(Debug, Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Ledger {
    /// Starts the writer on `database` (call it inside a Tokio runtime).
    pub fn start(database: Database, config: LedgerConfig) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_lines(database, config, receiver, dropped.clone()));
        Self { sender, dropped }
    }

    /// Adds a call's spend; when the queue is full the entry is dropped and counted.
    pub fn record(&self, entry: SpendEntry) {
        if self.sender.try_send(Message::Entry(entry)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    target: "tollgate::ledger",
                    dropped,
                    "the spend ledger's queue is full: entries are dropped"
                );
            }
        }
    }

    /// Writes everything recorded so far, and says whether the database took it.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database did not take it (the lines stay held for the next try).
    pub async fn flush(&self) -> Result<(), LlmError> {
        let (done, answer) = oneshot::channel();
        let stopped = || LlmError::new(ErrorKind::Internal, "the ledger's writer has stopped");
        self.sender
            .send(Message::Flush(done))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Calls whose spend was dropped: by a full queue, or by a full hold while the database was
    /// away.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_lines(
    database: Database,
    config: LedgerConfig,
    mut receiver: mpsc::Receiver<Message>,
    dropped: Arc<AtomicU64>,
) {
    let mut pending: BTreeMap<Line, Totals> = BTreeMap::new();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = receiver.recv() => {
                // Everything else waiting is taken at once: while the database is away each
                // write takes its timeout, and entries must not trickle in one per write.
                let mut next = message;
                for taken in 1..=DRAIN {
                    match next {
                        Some(Message::Entry(entry)) => add(&mut pending, entry, &config, &dropped),
                        Some(Message::Flush(done)) => {
                            let _ = done.send(write(&database, &mut pending).await);
                        }
                        None => {
                            if let Err(error) = write(&database, &mut pending).await {
                                let calls: u64 = pending.values().map(|t| t.calls).sum();
                                dropped.fetch_add(calls, Ordering::Relaxed);
                                tracing::warn!(target: "tollgate::ledger", %error, calls, "the spend ledger stopped with calls it could not write");
                            }
                            return;
                        }
                    }
                    // The last one taken here is handled here: none is taken and left.
                    if taken == DRAIN {
                        break;
                    }
                    match receiver.try_recv() {
                        Ok(message) => next = Some(message),
                        Err(_) => break,
                    }
                }
            },
            _ = tick.tick() => {
                if let Err(error) = write(&database, &mut pending).await {
                    tracing::warn!(target: "tollgate::ledger", %error, lines = pending.len(), "the spend ledger could not write; it holds the lines and tries again");
                }
            }
        }
    }
}

/// Messages taken at once, at most, before the writer looks at its clock again.
const DRAIN: usize = 4_096;

/// Adds `entry` to its line, or drops and counts it when a new line finds no room.
fn add(
    pending: &mut BTreeMap<Line, Totals>,
    entry: SpendEntry,
    config: &LedgerConfig,
    dropped: &AtomicU64,
) {
    let totals = Totals::of(&entry);
    let line = (
        day_number(entry.at),
        entry.key_id,
        entry.team,
        entry.model,
        entry.provider,
    );
    let room = pending.len() < config.max_pending_lines;
    match pending.get_mut(&line) {
        Some(held) => held.add(&totals),
        None if room => {
            pending.insert(line, totals);
        }
        None => {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes every pending line in one transaction, adding to what each line holds; on success
/// `pending` is emptied, on failure it is kept whole.
async fn write(database: &Database, pending: &mut BTreeMap<Line, Totals>) -> Result<(), LlmError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut tx = database.begin().await?;
    for ((day_number, key_id, team, model, provider), totals) in pending.iter() {
        let number = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO tg_spend (day, key_id, team, model, provider, calls, input_tokens, \
             cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (day, key_id, team, model, provider) DO UPDATE SET \
             calls = tg_spend.calls + excluded.calls, \
             input_tokens = tg_spend.input_tokens + excluded.input_tokens, \
             cached_input_tokens = tg_spend.cached_input_tokens + excluded.cached_input_tokens, \
             cache_write_tokens = tg_spend.cache_write_tokens + excluded.cache_write_tokens, \
             output_tokens = tg_spend.output_tokens + excluded.output_tokens, \
             reasoning_tokens = tg_spend.reasoning_tokens + excluded.reasoning_tokens, \
             cost_micros = tg_spend.cost_micros + excluded.cost_micros",
        )
        .bind(day(*day_number))
        .bind(&**key_id)
        .bind(&**team)
        .bind(&**model)
        .bind(&**provider)
        .bind(number(totals.calls))
        .bind(number(totals.input_tokens))
        .bind(number(totals.cached_input_tokens))
        .bind(number(totals.cache_write_tokens))
        .bind(number(totals.output_tokens))
        .bind(number(totals.reasoning_tokens))
        .bind(number(totals.cost_micros))
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot write the spend ledger", &e))?;
    }
    database.commit(tx).await?;
    pending.clear();
    Ok(())
}

/// `at`'s UTC day, counted from 1970-01-01: a plain division, where the text is written only
/// once a line is.
fn day_number(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| {
        i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX)
    })
}

/// The UTC day `number` days after 1970-01-01, `YYYY-MM-DD`.
fn day(number: i64) -> String {
    jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(number))
        .map_or_else(|_| "1970-01-01".into(), |date| date.to_string())
}

/// What spend is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The key's id.
    Key,
    /// The team.
    Team,
    /// The model that answered.
    Model,
    /// Its provider.
    Provider,
    /// The UTC day.
    Day,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            Self::Key => "key_id",
            Self::Team => "team",
            Self::Model => "model",
            Self::Provider => "provider",
            Self::Day => "day",
        }
    }

    /// `key`, `team`, `model`, `provider` or `day`.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` naming the choices.
    pub fn parse(text: &str) -> Result<Self, LlmError> {
        Ok(match text {
            "key" => Self::Key,
            "team" => Self::Team,
            "model" => Self::Model,
            "provider" => Self::Provider,
            "day" => Self::Day,
            other => {
                return Err(LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!("group_by: {other:?} is not key, team, model, provider or day"),
                ));
            }
        })
    }
}

/// Spend grouped, each group's totals and all of them together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpendReport {
    /// Per group, by its value (a key id, a team, a model, a provider or a day).
    pub groups: BTreeMap<String, Totals>,
    /// Every group together.
    pub total: Totals,
}

impl SpendReport {
    /// The report as CSV: a header naming the group column `group`, a row per group, and a
    /// `total` row; dollars exact (`0.000100`).
    ///
    /// ```
    /// let report = tollgate_control::SpendReport::default();
    /// assert_eq!(
    ///     report.to_csv("team"),
    ///     "team,calls,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd\n\
    ///      total,0,0,0,0,0,0,0.000000\n"
    /// );
    /// ```
    pub fn to_csv(&self, group: &str) -> String {
        let mut out = format!(
            "{},calls,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd\n",
            csv_field(group)
        );
        let rows = self
            .groups
            .iter()
            .map(|(name, totals)| (name.as_str(), totals))
            .chain([("total", &self.total)]);
        for (name, t) in rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}.{:06}\n",
                csv_field(name),
                t.calls,
                t.input_tokens,
                t.cached_input_tokens,
                t.cache_write_tokens,
                t.output_tokens,
                t.reasoning_tokens,
                t.cost_micros / 1_000_000,
                t.cost_micros % 1_000_000
            ));
        }
        out
    }
}

/// A CSV field: quoted (with quotes doubled) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

impl Database {
    /// What each team spent each UTC day from the day `from` (`YYYY-MM-DD`, included), in
    /// micro-dollars: team, then day.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a day that is not `YYYY-MM-DD`; `Unavailable` when the database does
    /// not answer.
    pub async fn daily_spend_by_team(
        &self,
        from: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, LlmError> {
        from.parse::<jiff::civil::Date>().map_err(|_| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("from: {from:?} is not a day such as 2026-12-01"),
            )
        })?;
        let rows = sqlx::query(
            "SELECT team, day, CAST(SUM(cost_micros) AS BIGINT) AS cost_micros FROM tg_spend \
             WHERE day >= $1 GROUP BY team, day ORDER BY team, day",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the spend ledger", &e))?;
        let mut days: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for row in &rows {
            let cost: i64 = get(row, "cost_micros")?;
            days.entry(get(row, "team")?)
                .or_default()
                .insert(get(row, "day")?, u64::try_from(cost).unwrap_or(0));
        }
        Ok(days)
    }

    /// Spend from the UTC day `from` to the day `to` (both included, `YYYY-MM-DD`; either may be
    /// open), grouped by `group_by`. Reads what the ledger has written.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a day that is not `YYYY-MM-DD`; `Unavailable` when the database does
    /// not answer.
    pub async fn spend(
        &self,
        group_by: GroupBy,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<SpendReport, LlmError> {
        for (name, day) in [("from", from), ("to", to)] {
            if let Some(day) = day {
                day.parse::<jiff::civil::Date>().map_err(|_| {
                    LlmError::new(
                        ErrorKind::InvalidRequest,
                        format!("{name}: {day:?} is not a day such as 2026-12-01"),
                    )
                })?;
            }
        }
        let column = group_by.column();
        // PostgreSQL sums BIGINTs as NUMERIC: each sum is cast back, on both backends.
        let rows = sqlx::query(&format!(
            "SELECT {column} AS grp, CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens, \
             CAST(SUM(cache_write_tokens) AS BIGINT) AS cache_write_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
             CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens, CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM tg_spend WHERE day >= $1 AND day <= $2 GROUP BY {column} ORDER BY {column}"
        ))
        .bind(from.unwrap_or("0000-01-01"))
        .bind(to.unwrap_or("9999-12-31"))
        .fetch_all(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the spend ledger", &e))?;
        let mut report = SpendReport::default();
        for row in &rows {
            let number = |column: &str| -> Result<u64, LlmError> {
                let value: i64 = get(row, column)?;
                Ok(u64::try_from(value).unwrap_or(0))
            };
            let totals = Totals {
                calls: number("calls")?,
                input_tokens: number("input_tokens")?,
                cached_input_tokens: number("cached_input_tokens")?,
                cache_write_tokens: number("cache_write_tokens")?,
                output_tokens: number("output_tokens")?,
                reasoning_tokens: number("reasoning_tokens")?,
                cost_micros: number("cost_micros")?,
            };
            report.total.add(&totals);
            report.groups.insert(get(row, "grp")?, totals);
        }
        Ok(report)
    }
}
