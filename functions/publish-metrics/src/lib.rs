//! PublishMetrics' logic, free of the Lambda runtime: parse a batch of SQS records, drop
//! duplicate orders, aggregate the counters, and write them exactly once through a [`Store`].
//!
//! Exactly once, per order: each transaction holds, for every order in it, a dedupe record
//! (`PK = Dedupe#Order#<detail-type>#<orderId>`, or `Dedupe#<event id>` when the detail has no
//! order ID; written only if absent, expiring by TTL) next to the counter updates of those
//! orders. An order delivered again (in the same batch, a later batch, after a crash between the
//! write and the SQS delete, or re-published by its producer under a new event ID) fails its
//! condition; the transaction is then retried without it, so it is never counted twice.

pub mod emf;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod model;
pub mod store;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use order_events::OrderEvent;
use tokio::time::Instant;

pub use store::{classify, client, sdk_config, Dynamo, DynamoStore, Store, TxError, WriteError};

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// The longest one write may take: the DynamoDB client's operation timeout (see
/// [`store::client`]). A write is only started with this much time left plus
/// [`ANSWER_MARGIN`], so the invocation answers before Lambda's deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time kept after the last write for returning the batch response.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// One event to count, with the SQS message that carried it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub event: OrderEvent,
    pub message_id: String,
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

/// When the invocation must have answered, and the clock its events are judged by.
#[derive(Clone, Copy, Debug)]
pub struct Invocation {
    pub deadline: Instant,
    pub now: DateTime<Utc>,
}

impl Invocation {
    /// From Lambda's deadline (milliseconds since the epoch). A deadline already past leaves
    /// no time at all, never "no deadline".
    pub fn from_deadline_ms(deadline_ms: u64) -> Self {
        let now = SystemTime::now();
        let now_ms = now.duration_since(UNIX_EPOCH).map_or(u128::MAX, |d| d.as_millis());
        Invocation { deadline: Instant::now() + time_left(deadline_ms, now_ms), now: now.into() }
    }

    /// An invocation with `left` to run, from now.
    pub fn with_time_left(left: Duration) -> Self {
        Invocation { deadline: Instant::now() + left, now: Utc::now() }
    }

    /// Whether a write started now still ends in time to answer.
    fn can_start_write(&self, after: Duration) -> bool {
        Instant::now() + after + ATTEMPT_TIMEOUT + ANSWER_MARGIN <= self.deadline
    }
}

/// Time from `now_ms` to `deadline_ms`; zero when it has passed.
pub fn time_left(deadline_ms: u64, now_ms: u128) -> Duration {
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
}

/// Retries of a transaction that was throttled or hit a transient fault.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(3) }
    }
}

impl RetryPolicy {
    /// Exponential backoff before attempt `attempt + 1`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base_delay.saturating_mul(1 << attempt.min(16)).min(self.max_delay)
    }
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
}

impl Outcome {
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

/// Counts one batch. Never fails as a whole: every problem is a failure of the records
/// concerned. Writes are only started while they can end before `invocation`'s deadline; the
/// records not attempted are failures, so SQS delivers them again.
pub async fn process<S: Store>(store: &S, event: SqsEvent, retry: RetryPolicy, invocation: Invocation) -> Outcome {
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
            Some(body) => OrderEvent::from_body(body, invocation.now).map_err(|e| e.to_string()),
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
            Ok(event) => pending.push(Pending { event, message_id }),
        }
    }
    let mut work: VecDeque<(Chunk, u32)> = chunks(pending).into_iter().map(|c| (c, 0)).collect();
    while let Some((chunk, attempt)) = work.pop_front() {
        write_chunk(store, chunk, attempt, retry, &invocation, &mut work, &mut outcome).await;
    }
    tracing::info!(
        counted = outcome.counted,
        duplicates = outcome.duplicates,
        bad = outcome.bad.len(),
        failed = outcome.failed.len(),
        transactions = outcome.transactions.len(),
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

/// One attempt at `chunk`; what is left to do goes to the front of `work`.
async fn write_chunk<S: Store>(
    store: &S,
    chunk: Chunk,
    attempt: u32,
    retry: RetryPolicy,
    invocation: &Invocation,
    work: &mut VecDeque<(Chunk, u32)>,
    outcome: &mut Outcome,
) {
    if chunk.events.is_empty() {
        return;
    }
    let delay = if attempt == 0 { Duration::ZERO } else { retry.delay(attempt - 1) };
    if !invocation.can_start_write(delay) {
        let reason = if attempt == 0 {
            "not attempted: the invocation's time ran out".to_owned()
        } else {
            format!("write failed after {attempt} attempt(s) and the invocation's time ran out")
        };
        return fail_all(chunk.events, &reason, &mut outcome.failed);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match store.write(&chunk).await {
        Ok(wcu) => {
            outcome.counted += chunk.events.len();
            outcome.transactions.push(chunk.items());
            outcome.wcu += wcu;
        }
        Err(WriteError::AlreadyCounted(keys)) => {
            let (dups, rest): (Vec<_>, Vec<_>) = chunk.events.into_iter().partition(|p| keys.contains(&p.event.dedupe));
            if dups.is_empty() {
                // Not one of ours: retrying the same items would loop.
                return fail_all(rest, "DynamoDB named orders that are not in the transaction", &mut outcome.failed);
            }
            for p in &dups {
                tracing::info!(message_id = %p.message_id, event_id = %p.event.id, "already counted");
            }
            outcome.duplicates += dups.len();
            work.push_front((Chunk::new(rest), attempt));
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
            work.push_front((Chunk::new(second), 0));
            work.push_front((Chunk::new(events), 0));
        }
        Err(WriteError::Transient(error)) if attempt + 1 < retry.max_attempts => {
            tracing::info!(attempt = attempt + 1, error = %error, "retrying the transaction");
            work.push_front((chunk, attempt + 1));
        }
        Err(error) => {
            let reason = format!("write failed after {} attempt(s): {error}", attempt + 1);
            fail_all(chunk.events, &reason, &mut outcome.failed);
        }
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
