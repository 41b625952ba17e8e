//! PublishMetrics' logic, free of the Lambda runtime: parse a batch of SQS records, drop
//! duplicate events, aggregate the counters, and write them exactly once through a [`Store`].
//!
//! Exactly once: each transaction holds, for every event in it, a dedupe record
//! (`PK = Dedupe#<event id>`, written only if absent, expiring by TTL) next to the counter
//! updates of those events. An event delivered again, in the same batch, a later batch or after
//! a crash between the write and the SQS delete, fails its condition; the transaction is then
//! retried without it, so it is never counted twice.

pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use order_events::{MetricKey, OrderEvent};

pub use store::{DynamoStore, Store, WriteError};

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// One event to count, with the SQS messages that carried it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub event: OrderEvent,
    pub message_id: String,
}

/// One transaction: the events' dedupe records and their aggregated counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub events: Vec<Pending>,
    pub counters: BTreeMap<MetricKey, u64>,
}

impl Chunk {
    pub fn new(events: Vec<Pending>) -> Self {
        let mut counters = BTreeMap::new();
        for p in &events {
            for key in p.event.metric_keys() {
                *counters.entry(key).or_insert(0) += 1;
            }
        }
        Chunk { events, counters }
    }

    /// Items of the transaction: one dedupe record per event, one update per counter.
    pub fn items(&self) -> usize {
        self.events.len() + self.counters.len()
    }
}

/// Splits events into chunks of at most [`MAX_TRANSACTION_ITEMS`] items each, in order.
pub fn chunks(events: Vec<Pending>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut current: Vec<Pending> = Vec::new();
    let mut keys: HashSet<MetricKey> = HashSet::new();
    for p in events {
        let new_keys: Vec<MetricKey> = p.event.metric_keys().into_iter().filter(|k| !keys.contains(k)).collect();
        if !current.is_empty() && current.len() + 1 + keys.len() + new_keys.len() > MAX_TRANSACTION_ITEMS {
            out.push(Chunk::new(std::mem::take(&mut current)));
            keys.clear();
        }
        keys.extend(p.event.metric_keys());
        current.push(p);
    }
    if !current.is_empty() {
        out.push(Chunk::new(current));
    }
    out
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
/// concerned. `deadline` (the invocation's) stops retries early enough to answer in time.
pub async fn process<S: Store>(store: &S, event: SqsEvent, retry: RetryPolicy, deadline: Option<Instant>) -> Outcome {
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
            Some(body) => OrderEvent::from_body(body).map_err(|e| e.to_string()),
        };
        match parsed {
            Err(reason) => {
                tracing::warn!(message_id = %message_id, reason = %reason, "bad record");
                outcome.bad.push(Failure { message_id, reason });
            }
            Ok(event) if !seen.insert(event.id.clone()) => {
                tracing::info!(message_id = %message_id, event_id = %event.id, "duplicate in this batch");
                outcome.duplicates += 1;
            }
            Ok(event) => pending.push(Pending { event, message_id }),
        }
    }
    for chunk in chunks(pending) {
        write_chunk(store, chunk, retry, deadline, &mut outcome).await;
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

async fn write_chunk<S: Store>(
    store: &S,
    mut chunk: Chunk,
    retry: RetryPolicy,
    deadline: Option<Instant>,
    outcome: &mut Outcome,
) {
    let mut attempt = 0;
    loop {
        if chunk.events.is_empty() {
            return;
        }
        let error = match store.write(&chunk).await {
            Ok(()) => {
                outcome.counted += chunk.events.len();
                outcome.transactions.push(chunk.items());
                return;
            }
            Err(WriteError::AlreadyCounted(ids)) if !ids.is_empty() => {
                let (dups, rest): (Vec<_>, Vec<_>) = chunk.events.into_iter().partition(|p| ids.contains(&p.event.id));
                for p in &dups {
                    tracing::info!(message_id = %p.message_id, event_id = %p.event.id, "already counted");
                }
                outcome.duplicates += dups.len();
                chunk = Chunk::new(rest);
                continue;
            }
            Err(e) => e,
        };
        let out_of_time = deadline.is_some_and(|d| Instant::now() + retry.delay(attempt) + Duration::from_secs(1) > d);
        attempt += 1;
        if matches!(error, WriteError::Permanent(_)) || attempt >= retry.max_attempts || out_of_time {
            let reason = format!("write failed after {attempt} attempt(s): {error}");
            for p in chunk.events {
                tracing::warn!(message_id = %p.message_id, event_id = %p.event.id, reason = %reason, "not counted");
                outcome.failed.push(Failure { message_id: p.message_id, reason: reason.clone() });
            }
            return;
        }
        tracing::info!(attempt, error = %error, "retrying the transaction");
        tokio::time::sleep(retry.delay(attempt - 1)).await;
    }
}

#[cfg(test)]
mod tests;
