//! PublishMetrics' logic, free of the Lambda runtime: parse a batch of SQS records, drop
//! duplicate orders, aggregate the counters, and write them exactly once through a [`Store`].
//!
//! Exactly once, per order: each transaction holds, for every order in it, a dedupe record
//! (`PK = Dedupe#Order#<detail-type>#<orderId>`, or `Dedupe#<event id>` when the detail has no
//! order ID; written only if absent, expiring by TTL) next to the counter updates of those
//! orders. An order delivered again (in the same batch, a later batch, after a crash between the
//! write and the SQS delete, or re-published by its producer under a new event ID) fails its
//! condition; the transaction is then retried without it, so it is never counted twice.

pub mod backfill;
pub mod emf;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod model;
pub mod pacing;
pub mod store;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use order_events::{Age, OrderEvent};
use tokio::time::Instant;

pub use pacing::Pacer;
pub use store::{classify, client, Dynamo, DynamoStore, Store, TxError, WriteError};

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// The longest one write may take: the DynamoDB client's operation timeout (see
/// [`store::client`]). A write is only started with this much time left plus
/// [`ANSWER_MARGIN`], so the invocation answers before Lambda's deadline. The stack checks the
/// function's timeout against both.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(order_events::capacity::WRITE_ATTEMPT_SECS as u64);

/// Time kept after the last write for returning the batch response.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(order_events::capacity::ANSWER_MARGIN_SECS as u64);

/// One event to count, with the SQS message that carried it and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub event: OrderEvent,
    pub message_id: String,
    /// When the message entered the queue (SQS `SentTimestamp`), when SQS said.
    pub sent_at: Option<DateTime<Utc>>,
    /// When PublishMetrics received it (the invocation's clock).
    pub received_at: DateTime<Utc>,
    /// The invocation that received it ([`Invocation::id`]).
    pub counted_by: Arc<str>,
}

impl Pending {
    /// `event` from message `message_id`, received by `invocation`, with no `SentTimestamp`.
    pub fn new(event: OrderEvent, message_id: impl Into<String>, invocation: &Invocation) -> Self {
        Pending {
            event,
            message_id: message_id.into(),
            sent_at: None,
            received_at: invocation.now,
            counted_by: invocation.id.clone(),
        }
    }
}

/// SQS's `SentTimestamp` attribute (milliseconds since the epoch), when present and valid.
fn sent_at(attributes: &std::collections::HashMap<String, String>) -> Option<DateTime<Utc>> {
    attributes.get("SentTimestamp")?.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis)
}

/// One transaction: the orders' dedupe records and their counters, aggregated by the sort key
/// of the item each one updates, so no two updates in a transaction can touch one item.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub events: Vec<Pending>,
    /// Sort key (`YYYY-MM-DD#<metric>`) -> increment.
    pub counters: BTreeMap<String, u64>,
}

impl Chunk {
    pub fn new(events: Vec<Pending>) -> Self {
        let mut counters = BTreeMap::new();
        for p in &events {
            for key in p.event.metric_keys() {
                *counters.entry(key.sort_key()).or_insert(0) += 1;
            }
        }
        Chunk { events, counters }
    }

    /// Items of the transaction: one dedupe record per event, one update per counter item.
    pub fn items(&self) -> usize {
        self.events.len() + self.counters.len()
    }
}

/// Splits events into chunks of at most [`MAX_TRANSACTION_ITEMS`] items each, in order.
pub fn chunks(events: Vec<Pending>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut current: Vec<Pending> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    for p in events {
        let event_keys: Vec<String> = p.event.metric_keys().iter().map(|k| k.sort_key()).collect();
        let new_keys = event_keys.iter().filter(|k| !keys.contains(*k)).count();
        if !current.is_empty() && current.len() + 1 + keys.len() + new_keys > MAX_TRANSACTION_ITEMS {
            out.push(Chunk::new(std::mem::take(&mut current)));
            keys.clear();
        }
        keys.extend(event_keys);
        current.push(p);
    }
    if !current.is_empty() {
        out.push(Chunk::new(current));
    }
    out
}

/// Which invocation this is, when it must have answered, the clock its events are judged by,
/// and whether their age is ([`Age::Bounded`], always so in the Lambda function).
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Lambda's request ID (unique per invocation), kept in the dedupe records it writes.
    pub id: Arc<str>,
    pub deadline: Instant,
    pub now: DateTime<Utc>,
    pub age: Age,
}

/// An ID no other invocation of this process has, for invocations outside Lambda: `kind`,
/// the process, the time and a counter.
fn local_id(kind: &str) -> Arc<str> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{kind}-{}-{nanos}-{n}", std::process::id()).into()
}

impl Invocation {
    /// From Lambda's deadline (milliseconds since the epoch). A deadline already past leaves
    /// no time at all, never "no deadline".
    pub fn from_deadline_ms(request_id: &str, deadline_ms: u64) -> Self {
        let now = SystemTime::now();
        Invocation {
            id: request_id.into(),
            deadline: Instant::now() + connection::lambda::time_left(deadline_ms, now),
            now: now.into(),
            age: Age::Bounded,
        }
    }

    /// An invocation with `left` to run, from now.
    pub fn with_time_left(left: Duration) -> Self {
        Invocation { id: local_id("local"), deadline: Instant::now() + left, now: Utc::now(), age: Age::Bounded }
    }

    /// A deliberate backfill with `left` to run: events of any age, under an ID of its own.
    pub fn backfill(left: Duration) -> Self {
        Invocation { id: local_id("backfill"), age: Age::Backfill, ..Self::with_time_left(left) }
    }

    /// The same invocation, judging events' times against `now` instead.
    pub fn judged_at(self, now: DateTime<Utc>) -> Self {
        Invocation { now, ..self }
    }

    /// Whether a write started now still ends in time to answer.
    fn can_start_write(&self, after: Duration) -> bool {
        Instant::now() + after + ATTEMPT_TIMEOUT + ANSWER_MARGIN <= self.deadline
    }
}

/// Backoff between attempts at a transaction that was throttled or hit a transient fault.
/// There is no fixed number of attempts: a chunk is retried for as long as the invocation's
/// deadline allows another attempt, then returned to the queue.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(3) }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: exponential, capped at `max_delay`, with "equal
    /// jitter" (half of it fixed, half spread by `key`), so instances throttled at once do not
    /// retry in step. The spread is a hash of `key` and the attempt rather than a random
    /// number: reproducible in tests, and different for different records.
    pub fn delay(&self, attempt: u32, key: &str) -> Duration {
        let full = self.base_delay.saturating_mul(1 << attempt.min(16)).min(self.max_delay);
        full / 2 + (full / 2).mul_f64(spread(key, attempt))
    }
}

/// A number in [0, 1) from `key` and `attempt` (FNV-1a, then splitmix64's finalizer).
fn spread(key: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A record that was not counted, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub message_id: String,
    pub reason: String,
}

/// What became of a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Events counted by this invocation.
    pub counted: usize,
    /// Messages whose event was counted before (or earlier in this batch).
    pub duplicates: usize,
    /// Records that are not countable events: they go back to the queue, then to the DLQ.
    pub bad: Vec<Failure>,
    /// Records whose write failed after retries: they go back to the queue.
    pub failed: Vec<Failure>,
    /// TransactWriteItems calls that succeeded, with their item counts.
    pub transactions: Vec<usize>,
    /// Write capacity those transactions consumed, by DynamoDB's size rules
    /// ([`store::transaction_wcu`] of the items written).
    pub wcu: u64,
    /// Attempts the table refused for throughput (throttled), each retried or returned.
    pub throttled: usize,
    /// Time spent waiting for the write budget ([`Pacer`]).
    pub paced: Duration,
}

impl Outcome {
    /// Adds `other`'s counts, failures and writes to these.
    pub fn absorb(&mut self, other: Outcome) {
        self.counted += other.counted;
        self.duplicates += other.duplicates;
        self.bad.extend(other.bad);
        self.failed.extend(other.failed);
        self.transactions.extend(other.transactions);
        self.wcu += other.wcu;
        self.throttled += other.throttled;
        self.paced += other.paced;
    }

    /// The response that makes SQS delete exactly the records that succeeded.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for f in self.bad.iter().chain(&self.failed) {
            let mut item = BatchItemFailure::default();
            item.item_identifier = f.message_id.clone();
            response.batch_item_failures.push(item);
        }
        response
    }
}

/// How writes are spaced: the backoff after a failed attempt, and the write budget.
#[derive(Clone, Copy, Debug)]
pub struct Spacing<'a> {
    pub retry: RetryPolicy,
    pub pacer: &'a Pacer,
}

/// Counts one batch. Never fails as a whole: every problem is a failure of the records
/// concerned. Writes are only started while they can end before `invocation`'s deadline, after
/// waiting for the backoff and the write budget (`spacing`); the records not attempted are
/// failures, so SQS delivers them again.
pub async fn process<S: Store>(store: &S, event: SqsEvent, spacing: Spacing<'_>, invocation: Invocation) -> Outcome {
    let mut outcome = Outcome::default();
    let mut seen = HashSet::new();
    let mut pending = Vec::new();
    for (i, record) in event.records.into_iter().enumerate() {
        let Some(message_id) = record.message_id else {
            // SQS always sets it; without it the record cannot be reported, so say so loudly.
            tracing::error!(index = i, "record without a messageId; it cannot be reported as failed");
            continue;
        };
        let parsed = match record.body.as_deref() {
            None => Err("the record has no body".to_owned()),
            Some(body) => OrderEvent::read_body(body, invocation.now, invocation.age).map_err(|e| e.to_string()),
        };
        match parsed {
            Err(reason) => {
                tracing::warn!(message_id = %message_id, reason = %reason, "bad record");
                outcome.bad.push(Failure { message_id, reason });
            }
            Ok(event) if !seen.insert(event.dedupe.clone()) => {
                tracing::info!(message_id = %message_id, event_id = %event.id, "duplicate in this batch");
                outcome.duplicates += 1;
            }
            Ok(event) => {
                let mut p = Pending::new(event, message_id, &invocation);
                p.sent_at = sent_at(&record.attributes);
                pending.push(p);
            }
        }
    }
    let mut work: VecDeque<Work> = chunks(pending).into_iter().map(Work::first).collect();
    while let Some(next) = work.pop_front() {
        write_chunk(store, next, spacing, &invocation, &mut work, &mut outcome).await;
    }
    tracing::info!(
        counted = outcome.counted,
        duplicates = outcome.duplicates,
        bad = outcome.bad.len(),
        failed = outcome.failed.len(),
        transactions = outcome.transactions.len(),
        throttled = outcome.throttled,
        paced_ms = outcome.paced.as_millis() as u64,
        "batch done"
    );
    outcome
}

fn fail_all(events: Vec<Pending>, reason: &str, into: &mut Vec<Failure>) {
    for p in events {
        tracing::warn!(message_id = %p.message_id, event_id = %p.event.id, reason = %reason, "not counted");
        into.push(Failure { message_id: p.message_id, reason: reason.to_owned() });
    }
}

/// A chunk to write, with the attempts made at it and why the last one failed.
struct Work {
    chunk: Chunk,
    attempt: u32,
    last_error: Option<WriteError>,
}

impl Work {
    fn first(chunk: Chunk) -> Self {
        Work { chunk, attempt: 0, last_error: None }
    }
}

/// One attempt at a chunk; what is left to do goes to the front of `work`.
async fn write_chunk<S: Store>(
    store: &S,
    Work { chunk, attempt, last_error }: Work,
    spacing: Spacing<'_>,
    invocation: &Invocation,
    work: &mut VecDeque<Work>,
    outcome: &mut Outcome,
) {
    let Some(first) = chunk.events.first() else { return };
    let backoff = if attempt == 0 { Duration::ZERO } else { spacing.retry.delay(attempt - 1, &first.message_id) };
    let cost = store.cost(&chunk);
    // The budget accrues during the backoff too.
    let delay = backoff.max(spacing.pacer.wait(cost));
    if !invocation.can_start_write(delay) {
        let reason = match (attempt, delay > backoff) {
            (0, false) => "not attempted: the invocation's time ran out".to_owned(),
            (0, true) => format!(
                "not attempted: its {cost} WCU at the write budget of {} WCU/s would start after the invocation's time ran out",
                spacing.pacer.budget()
            ),
            _ => {
                let last = last_error.map_or_else(String::new, |e| format!(" (last: {e})"));
                format!("write failed after {attempt} attempt(s) and the invocation's time ran out{last}")
            }
        };
        return fail_all(chunk.events, &reason, &mut outcome.failed);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
        outcome.paced += delay - backoff;
    }
    spacing.pacer.charge(cost);
    match store.write(&chunk).await {
        Ok(wcu) => {
            outcome.counted += chunk.events.len();
            outcome.transactions.push(chunk.items());
            outcome.wcu += wcu;
        }
        Err(WriteError::AlreadyCounted { before, ours }) => {
            let (done, rest): (Vec<_>, Vec<_>) = chunk
                .events
                .into_iter()
                .partition(|p| before.contains(&p.event.dedupe) || ours.contains(&p.event.dedupe));
            if done.is_empty() {
                // Not one of ours: retrying the same items would loop.
                return fail_all(rest, "DynamoDB named orders that are not in the transaction", &mut outcome.failed);
            }
            for p in &done {
                if ours.contains(&p.event.dedupe) {
                    // An earlier attempt committed and timed out: its counts are this invocation's.
                    tracing::info!(message_id = %p.message_id, event_id = %p.event.id, "counted by an earlier attempt");
                    outcome.counted += 1;
                } else {
                    tracing::info!(message_id = %p.message_id, event_id = %p.event.id, "already counted");
                    outcome.duplicates += 1;
                }
            }
            if rest.is_empty() && before.is_empty() {
                // The whole earlier attempt committed: its transaction and capacity were used.
                outcome.transactions.push(chunk.counters.len() + done.len());
                outcome.wcu += cost;
            }
            work.push_front(Work { chunk: Chunk::new(rest), attempt, last_error });
        }
        Err(WriteError::Rejected(reason)) if chunk.events.len() == 1 => {
            fail_all(chunk.events, &format!("DynamoDB refuses this record: {reason}"), &mut outcome.bad);
        }
        Err(WriteError::Rejected(reason)) => {
            // Something in the items is refused: halve until the records at fault stand alone,
            // counting the rest in this invocation.
            tracing::info!(events = chunk.events.len(), reason = %reason, "transaction refused; splitting it");
            let mut events = chunk.events;
            let second = events.split_off(events.len() / 2);
            work.push_front(Work::first(Chunk::new(second)));
            work.push_front(Work::first(Chunk::new(events)));
        }
        Err(error @ (WriteError::Throttled(_) | WriteError::Transient(_))) => {
            if matches!(error, WriteError::Throttled(_)) {
                outcome.throttled += 1;
            }
            tracing::info!(attempt = attempt + 1, error = %error, "retrying the transaction");
            work.push_front(Work { chunk, attempt: attempt + 1, last_error: Some(error) });
        }
        Err(error @ WriteError::Permanent(_)) => {
            let reason = format!("write failed after {} attempt(s): {error}", attempt + 1);
            fail_all(chunk.events, &reason, &mut outcome.failed);
        }
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
