//! An SQS event source mapping as Lambda runs one: pollers gather batches up to the batch size
//! or until the batching window closes, invoke the function, and delete what the response says
//! succeeded. The number of pollers follows Lambda's scaling, not the function's concurrency:
//! it starts at the mapping's initial batches and grows while messages wait, up to its maximum.
//! A batch that finds every allowed execution busy is throttled: retried with backoff until its
//! messages' visibility timeout ends, then dropped, so they come back with their receive count
//! up. A failed invocation deletes nothing: its messages come back when their visibility
//! timeout ends, and the queue's own redrive policy moves a message to the dead-letter queue
//! after `maxReceiveCount` receives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::function::{FunctionConfig, Instance, Outcome};
use crate::{Error, ACCOUNT_CONCURRENCY, MAX_PAYLOAD_BYTES};

/// How the mapping scales its concurrent batches (for SQS, AWS's numbers are in the construct
/// library: five at first, up to 300 more a minute, at most 1,000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaling {
    pub initial: u32,
    pub per_minute: u32,
    pub max: u32,
}

/// The mapping as the template configures it.
#[derive(Clone, Debug, PartialEq)]
pub struct SqsMapping {
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub scaling: Scaling,
    /// `ScalingConfig.MaximumConcurrency`: at most this many batches at once.
    pub max_concurrency: Option<u32>,
    /// The function's reserved concurrency: invocations beyond it are throttled (`None`: the
    /// account's unreserved concurrency). Zero stops the function: nothing is polled.
    pub reserved_concurrency: Option<u32>,
    /// Passed on every receive (the queue's own, or a shortened one for a demo): a throttled
    /// batch is retried until it ends.
    pub visibility_timeout: Duration,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `Enabled`: a disabled mapping polls nothing.
    pub enabled: bool,
    /// How many times faster than AWS's clock the mapping's own timings run (its scaling rate
    /// and throttle backoff); 1.0 is AWS's.
    pub time_scale: f64,
}

impl SqsMapping {
    /// The most batches the mapping runs at once.
    pub fn max_batches(&self) -> u32 {
        self.max_concurrency.map_or(self.scaling.max, |m| m.min(self.scaling.max))
    }

    /// The batches it starts with.
    pub fn initial_batches(&self) -> u32 {
        self.scaling.initial.min(self.max_batches())
    }
}

/// The next number of pollers, one second on: up by the scaling rate while batches come back
/// full and none is throttled, down by one (not below the initial number) while some are, as
/// Lambda "gradually backs off" a throttled mapping (AWS gives no figure for the back-off).
pub fn next_pollers(current: u32, mapping: &SqsMapping, full_batches: u32, throttles: u32) -> u32 {
    let (initial, max) = (mapping.initial_batches(), mapping.max_batches());
    if throttles > 0 {
        current.saturating_sub(1).max(initial)
    } else if full_batches > 0 {
        let step = (f64::from(mapping.scaling.per_minute) / 60.0).ceil() as u32;
        current.saturating_add(step).min(max)
    } else {
        current
    }
}

/// What the mapping does with a batch after the invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Every message is deleted.
    DeleteAll,
    /// Only these message IDs stay on the queue (a partial batch response); the rest are deleted.
    Keep(Vec<String>),
    /// Nothing is deleted: the whole batch comes back after its visibility timeout.
    ReturnAll(String),
}

/// The documented rules of a batch response, for a batch of `ids`.
///
/// Success (everything deleted): a null or empty response, an empty object, a null or empty
/// `batchItemFailures` list — and any successful response when the mapping does not report
/// item failures. Complete failure (nothing deleted): a function error, timeout or crash,
/// invalid JSON, an entry without `itemIdentifier` (or another key name), a null or empty
/// identifier, or one that is not in the batch.
pub fn settle(outcome: &Outcome, ids: &[String], report_batch_item_failures: bool) -> Settlement {
    let body = match outcome {
        Outcome::Response(body) => body,
        other => return Settlement::ReturnAll(other.to_string()),
    };
    if !report_batch_item_failures || body.iter().all(u8::is_ascii_whitespace) {
        return Settlement::DeleteAll;
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Settlement::ReturnAll(format!("the response is not JSON: {e}")),
    };
    let failures = match &value {
        serde_json::Value::Null => return Settlement::DeleteAll,
        serde_json::Value::Object(o) => match o.get("batchItemFailures") {
            None | Some(serde_json::Value::Null) => return Settlement::DeleteAll,
            Some(serde_json::Value::Array(list)) => list,
            Some(other) => return Settlement::ReturnAll(format!("batchItemFailures is not a list: {other}")),
        },
        other => return Settlement::ReturnAll(format!("the response is not a batch response: {other}")),
    };
    let mut keep = Vec::new();
    for entry in failures {
        match entry.get("itemIdentifier") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => {
                if !ids.contains(id) {
                    return Settlement::ReturnAll(format!("itemIdentifier {id:?} is not a message of the batch"));
                }
                if !keep.contains(id) {
                    keep.push(id.clone());
                }
            }
            _ => {
                return Settlement::ReturnAll(format!("a batch item failure without a usable itemIdentifier: {entry}"))
            }
        }
    }
    if keep.is_empty() {
        Settlement::DeleteAll
    } else {
        Settlement::Keep(keep)
    }
}

/// One batch: how many records, how long it was gathered, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Batch {
    pub records: usize,
    pub gathered_ms: u64,
    pub deleted: usize,
    /// Left on the queue: listed as failures, or the whole batch after a failed invocation.
    pub returned: usize,
    pub outcome: BatchOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BatchOutcome {
    Succeeded,
    Partial,
    /// A response the mapping cannot use (invalid JSON, an unknown item): the whole batch returns.
    InvalidResponse,
    FunctionError,
    InitError,
    Timeout,
    Crashed,
}

/// Running totals over every poller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MappingStats {
    pub invocations: u64,
    pub cold_starts: u64,
    pub records: u64,
    pub deleted: u64,
    pub returned: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Invocations refused because every execution the function may run was busy.
    pub throttles: u64,
    /// Batches throttled until their visibility timeout ended, and dropped: their messages
    /// come back with their receive count up.
    pub expired_batches: u64,
    /// Deletes SQS refused (a receipt handle that expired while the function ran): those
    /// messages come back and are delivered again.
    pub delete_failures: u64,
    /// The highest `ApproximateReceiveCount` of any message received.
    pub max_receive_count: u64,
    /// Pollers running now, and invocations running now.
    pub pollers: u32,
    pub running: u32,
    /// The most invocations running at once since [`MappingStats::take_peak`] last read it.
    pub peak_running: u32,
    /// `ReceiveMessage` calls made.
    pub receive_calls: u64,
    /// Messages received but left for a later batch, the event being full at Lambda's 6 MB.
    pub given_back: u64,
    /// SQS calls that failed and were retried, with the last failure.
    pub sqs_errors: u64,
    pub last_sqs_error: Option<String>,
    /// When each message received and not yet deleted was sent (`SentTimestamp`, ms since the
    /// epoch), by message ID; and the latest such time seen.
    pub undeleted_sent_ms: std::collections::BTreeMap<String, u64>,
    pub newest_sent_ms: u64,
    pub batches: Vec<Batch>,
}

impl MappingStats {
    /// When the oldest message not yet deleted was sent, as far as the pollers know: the
    /// oldest they received and did not delete, or, when messages `wait` that none has
    /// received yet, no older than the newest they have seen (SQS hands out a standard queue
    /// roughly oldest first). SQS's own `ApproximateAgeOfOldestMessage` is a CloudWatch metric
    /// no local endpoint computes.
    pub fn oldest_sent_ms(&self, waiting: bool) -> Option<u64> {
        match self.undeleted_sent_ms.values().min() {
            Some(oldest) => Some(*oldest),
            None if waiting && self.newest_sent_ms > 0 => Some(self.newest_sent_ms),
            None => None,
        }
    }

    /// The most invocations running at once since the last call, and starts counting again
    /// from those running now (CloudWatch's `ConcurrentExecutions`, maximum per period).
    pub fn take_peak(&mut self) -> u32 {
        std::mem::replace(&mut self.peak_running, self.running)
    }
}

impl std::fmt::Display for MappingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invocations {} (cold {}) | errors {} | timeouts {} | throttles {} | records {} | deleted {} | returned {}",
            self.invocations,
            self.cold_starts,
            self.errors,
            self.timeouts,
            self.throttles,
            self.records,
            self.deleted,
            self.returned
        )
    }
}

/// Polls the queue as Lambda's mapping does until `stop` turns true (a batch being gathered or
/// run is finished first), with the function's environments reused across invocations.
pub async fn run(
    sqs: aws_sdk_sqs::Client,
    mapping: SqsMapping,
    function: Arc<FunctionConfig>,
    stats: Arc<Mutex<MappingStats>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    if !mapping.enabled || mapping.reserved_concurrency == Some(0) {
        return Ok(());
    }
    let slots = mapping.reserved_concurrency.unwrap_or(ACCOUNT_CONCURRENCY) as usize;
    let shared = Arc::new(Shared {
        sqs,
        function: function.clone(),
        stats,
        slots: Semaphore::new(slots),
        idle: Mutex::new(Vec::new()),
        environments: AtomicUsize::new(0),
        signals: Mutex::new(Signals::default()),
        mapping,
    });
    let (target, targets) = watch::channel(shared.mapping.initial_batches());
    let mut pollers = tokio::task::JoinSet::new();
    let mut spawned = 0;
    let tick = Duration::from_secs(1).mul_f64(shared.mapping.time_scale);
    loop {
        let want = *target.borrow();
        while spawned < want {
            let poller = Poller { shared: shared.clone(), index: spawned, target: targets.clone(), stop: stop.clone() };
            pollers.spawn(poller.run());
            spawned += 1;
        }
        shared.stats().pollers = want.min(spawned);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let signals = std::mem::take(&mut *shared.signals.lock().unwrap_or_else(|p| p.into_inner()));
        let next = next_pollers(want, &shared.mapping, signals.full_batches, signals.throttles);
        // Pollers above the target finish their batch and stop; new ones are spawned above.
        if next < spawned {
            spawned = next;
        }
        let _ = target.send(next);
    }
    let mut first_error = None;
    while let Some(done) = pollers.join_next().await {
        let result = done.map_err(|e| Error::Poller { function: function.name.clone(), why: e.to_string() });
        if let Err(e) = result.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    let idle = std::mem::take(&mut *shared.idle.lock().unwrap_or_else(|p| p.into_inner()));
    for mut instance in idle {
        instance.shutdown().await;
    }
    shared.stats().pollers = 0;
    first_error.map_or(Ok(()), Err)
}

/// What the pollers share: the queue, the function's allowed executions and its idle
/// environments, the stats, and what the scaler reads each second.
struct Shared {
    sqs: aws_sdk_sqs::Client,
    mapping: SqsMapping,
    function: Arc<FunctionConfig>,
    stats: Arc<Mutex<MappingStats>>,
    /// One permit per execution the function may run at once.
    slots: Semaphore,
    idle: Mutex<Vec<Instance>>,
    environments: AtomicUsize,
    signals: Mutex<Signals>,
}

/// What happened since the scaler's last look.
#[derive(Default)]
struct Signals {
    full_batches: u32,
    throttles: u32,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, MappingStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self, f: impl FnOnce(&mut Signals)) {
        f(&mut self.signals.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// An idle environment, or a new one (a cold start on its first invocation).
    fn environment(&self) -> Instance {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        idle.unwrap_or_else(|| Instance::new(self.function.clone(), self.environments.fetch_add(1, Ordering::Relaxed)))
    }

    fn release(&self, instance: Instance) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(instance);
    }
}

/// The event Lambda passes for `messages` received from the queue `queue_arn`.
pub fn event(messages: &[Message], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| record(m, queue_arn, region)).collect();
    event
}

/// One message as a record of Lambda's event.
fn record(m: &Message, queue_arn: &str, region: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = m.message_id().map(str::to_owned);
    record.receipt_handle = m.receipt_handle().map(str::to_owned);
    record.body = m.body().map(str::to_owned);
    record.md5_of_body = m.md5_of_body().map(str::to_owned);
    record.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
    record.message_attributes = m
        .message_attributes()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), message_attribute(v))).collect())
        .unwrap_or_default();
    record.attributes = m
        .attributes()
        .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect::<HashMap<_, _>>())
        .unwrap_or_default();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue_arn.to_owned());
    record.aws_region = Some(region.to_owned());
    record
}

/// The bytes of an event with no record (`{"Records":[]}`).
const EMPTY_EVENT_BYTES: usize = 14;

/// What `m` adds to an event: its record's JSON and a separator.
fn record_bytes(m: &Message, mapping: &SqsMapping) -> usize {
    serde_json::to_vec(&record(m, &mapping.queue_arn, &mapping.region)).map_or(usize::MAX / 2, |v| v.len()) + 1
}

/// A message attribute as Lambda's event carries it: `stringValue`, `binaryValue` (base64 in
/// the JSON), `dataType`, and the list fields.
fn message_attribute(v: &aws_sdk_sqs::types::MessageAttributeValue) -> SqsMessageAttribute {
    let mut a = SqsMessageAttribute::default();
    a.string_value = v.string_value().map(str::to_owned);
    let data = |bytes: &[u8]| {
        let mut d = Base64Data::default();
        d.extend_from_slice(bytes);
        d
    };
    a.binary_value = v.binary_value().map(|b| data(b.as_ref()));
    a.string_list_values = v.string_list_values().to_vec();
    a.binary_list_values = v.binary_list_values().iter().map(|b| data(b.as_ref())).collect();
    a.data_type = Some(v.data_type().to_owned());
    a
}

/// Deletes `messages` in calls of 10 (SQS's limit); returns how many SQS refused (a receipt
/// handle that expired: that message will be delivered again).
pub async fn delete(sqs: &aws_sdk_sqs::Client, queue_url: &str, messages: &[&Message]) -> Result<usize, Error> {
    let mut refused = 0;
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sqs_error("DeleteMessageBatch", queue_url, e))?;
        let out = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessageBatch", queue_url, e))?;
        refused += out.failed().len();
    }
    Ok(refused)
}

struct Poller {
    shared: Arc<Shared>,
    index: u32,
    target: watch::Receiver<u32>,
    stop: watch::Receiver<bool>,
}

fn sqs_error(action: &'static str, queue: &str, e: impl std::error::Error) -> Error {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    Error::Sqs { action, queue: queue.to_owned(), message }
}

/// First retry of a throttled batch, and the longest wait between retries (AWS documents only
/// that Lambda backs off gradually).
const THROTTLE_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(5));

impl Poller {
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.index >= *self.target.borrow()
    }

    async fn run(self) -> Result<(), Error> {
        let mut failures = 0u32;
        while !self.stopping() {
            let gathered = match self.gather().await {
                Ok(g) => {
                    failures = 0;
                    g
                }
                Err(e) => {
                    // SQS errors are retried with backoff: one failed call does not end the run.
                    failures += 1;
                    {
                        let mut stats = self.shared.stats();
                        stats.sqs_errors += 1;
                        stats.last_sqs_error = Some(e.to_string());
                    }
                    let wait = Duration::from_millis(200 * 2u64.pow(failures.min(5)));
                    tokio::time::sleep(wait.mul_f64(self.shared.mapping.time_scale)).await;
                    continue;
                }
            };
            let Some((messages, gathered, first_receive)) = gathered else { continue };
            if messages.len() == self.shared.mapping.batch_size as usize {
                self.shared.signal(|s| s.full_batches += 1);
            }
            let expires = first_receive + self.shared.mapping.visibility_timeout;
            let Some(slot) = self.slot(expires).await else {
                // Dropped: the messages come back when their visibility timeout ends.
                self.shared.stats().expired_batches += 1;
                continue;
            };
            let instance = self.shared.environment();
            let result = self.invoke(instance, messages, gathered).await;
            drop(slot);
            result?;
        }
        Ok(())
    }

    /// A permit to run the function, retrying with backoff while every allowed execution is
    /// busy, until the batch's visibility timeout would end first (`None`).
    async fn slot(&self, expires: Instant) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let scale = self.shared.mapping.time_scale;
        let mut backoff = THROTTLE_BACKOFF.0.mul_f64(scale);
        loop {
            if let Ok(permit) = self.shared.slots.try_acquire() {
                return Some(permit);
            }
            self.shared.stats().throttles += 1;
            self.shared.signal(|s| s.throttles += 1);
            if Instant::now() + backoff >= expires {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(THROTTLE_BACKOFF.1.mul_f64(scale));
        }
    }

    /// Receives until the batch is full or the window (from the first message) closes; the
    /// batch, how long it took, and when its first message was received (its visibility
    /// timeout runs from there). `None` when nothing came.
    async fn gather(&self) -> Result<Option<(Vec<Message>, Duration, Instant)>, Error> {
        let m = &self.shared.mapping;
        let mut messages: Vec<Message> = Vec::new();
        let mut first: Option<Instant> = None;
        // Messages that would take the event past Lambda's payload limit.
        let mut overflow: Vec<Message> = Vec::new();
        let mut full = false;
        // The event's size so far: its envelope, then each record and its separator.
        let mut payload = EMPTY_EVENT_BYTES;
        while messages.len() < m.batch_size as usize {
            if messages.is_empty() && self.stopping() {
                break;
            }
            let left = m.batch_size as usize - messages.len();
            let wait = match first {
                // Short polls, so a stop is seen within a second.
                None => 1,
                Some(t) => match m.batching_window.saturating_sub(t.elapsed()) {
                    left if left >= Duration::from_secs(1) => 1,
                    // SQS waits in whole seconds: sleep out the last one, then take what came,
                    // rather than poll it with zero waits.
                    left => {
                        tokio::time::sleep(left).await;
                        0
                    }
                },
            };
            self.shared.stats().receive_calls += 1;
            let started = Instant::now();
            let out = self
                .shared
                .sqs
                .receive_message()
                .queue_url(&m.queue_url)
                .max_number_of_messages(left.min(10) as i32)
                .wait_time_seconds(wait)
                .visibility_timeout((m.visibility_timeout.as_secs_f64().ceil() as i32).max(1))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| sqs_error("ReceiveMessage", &m.queue_url, e))?;
            if !out.messages().is_empty() {
                first.get_or_insert(started);
            }
            for m in out.messages() {
                let attribute = |name: &MessageSystemAttributeName| {
                    m.attributes().and_then(|a| a.get(name)).and_then(|n| n.parse::<u64>().ok())
                };
                let receives = attribute(&MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1);
                {
                    let mut stats = self.shared.stats();
                    stats.max_receive_count = stats.max_receive_count.max(receives);
                    if let (Some(id), Some(sent)) =
                        (m.message_id(), attribute(&MessageSystemAttributeName::SentTimestamp))
                    {
                        stats.undeleted_sent_ms.insert(id.to_owned(), sent);
                        stats.newest_sent_ms = stats.newest_sent_ms.max(sent);
                    }
                }
                // Received again within one window (its visibility timeout is shorter than the
                // window): one record, with the newest receipt handle, the only one still valid.
                let bytes = record_bytes(m, &self.shared.mapping);
                match messages.iter_mut().find(|k| k.message_id() == m.message_id()) {
                    Some(known) => {
                        payload = payload - record_bytes(known, &self.shared.mapping) + bytes;
                        *known = m.clone();
                    }
                    // Lambda invokes with what fits its 6 MB payload; the rest waits for the next batch.
                    None if full || payload + bytes > MAX_PAYLOAD_BYTES => {
                        full = true;
                        overflow.push(m.clone());
                    }
                    None => {
                        payload += bytes;
                        messages.push(m.clone());
                    }
                }
            }
            if full {
                self.give_back(&overflow).await;
                break;
            }
            match first {
                Some(t) if t.elapsed() >= m.batching_window => break,
                _ => {}
            }
        }
        Ok(first.map(|t| (messages, t.elapsed(), t)))
    }

    /// Makes `messages` visible again at once, for a later batch (their receive count stays
    /// up, as on AWS). A refusal only delays them to their visibility timeout.
    async fn give_back(&self, messages: &[Message]) {
        let m = &self.shared.mapping;
        for message in messages {
            let Some(handle) = message.receipt_handle() else { continue };
            let changed = self
                .shared
                .sqs
                .change_message_visibility()
                .queue_url(&m.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = changed {
                let mut stats = self.shared.stats();
                stats.sqs_errors += 1;
                stats.last_sqs_error = Some(sqs_error("ChangeMessageVisibility", &m.queue_url, e).to_string());
            }
        }
        self.shared.stats().given_back += messages.len() as u64;
    }

    async fn invoke(&self, mut instance: Instance, messages: Vec<Message>, gathered: Duration) -> Result<(), Error> {
        let m = &self.shared.mapping;
        let ids: Vec<String> = messages.iter().map(|m| m.message_id().unwrap_or_default().to_owned()).collect();
        let payload = serde_json::to_vec(&event(&messages, &m.queue_arn, &m.region)).unwrap_or_default();
        {
            let mut stats = self.shared.stats();
            stats.running += 1;
            stats.peak_running = stats.peak_running.max(stats.running);
        }
        let invoked = instance.invoke(Bytes::from(payload)).await;
        self.shared.stats().running -= 1;
        self.shared.release(instance);
        let invocation = invoked?;
        let settlement = settle(&invocation.outcome, &ids, m.report_batch_item_failures);
        let to_delete: Vec<&Message> = match &settlement {
            Settlement::DeleteAll => messages.iter().collect(),
            Settlement::Keep(keep) => {
                messages.iter().filter(|m| !keep.iter().any(|k| Some(k.as_str()) == m.message_id())).collect()
            }
            Settlement::ReturnAll(_) => Vec::new(),
        };
        // A failed delete call leaves the messages to come back after their visibility timeout.
        let delete_failures = match delete(&self.shared.sqs, &m.queue_url, &to_delete).await {
            Ok(n) => n,
            Err(e) => {
                let mut stats = self.shared.stats();
                stats.sqs_errors += 1;
                stats.last_sqs_error = Some(e.to_string());
                to_delete.len()
            }
        };
        let outcome = match (&invocation.outcome, &settlement) {
            (Outcome::Response(_), Settlement::DeleteAll) => BatchOutcome::Succeeded,
            (Outcome::Response(_), Settlement::Keep(_)) => BatchOutcome::Partial,
            (Outcome::Response(_), Settlement::ReturnAll(_)) => BatchOutcome::InvalidResponse,
            (Outcome::FunctionError(_) | Outcome::ResponseTooLarge, _) => BatchOutcome::FunctionError,
            (Outcome::InitError(_), _) => BatchOutcome::InitError,
            (Outcome::Timeout(_), _) => BatchOutcome::Timeout,
            (Outcome::Crashed(_) | Outcome::OutOfMemory { .. }, _) => BatchOutcome::Crashed,
        };
        let mut stats = self.shared.stats();
        for m in &to_delete {
            if let Some(id) = m.message_id() {
                stats.undeleted_sent_ms.remove(id);
            }
        }
        stats.invocations += 1;
        stats.cold_starts += u64::from(invocation.cold_start);
        stats.records += messages.len() as u64;
        stats.deleted += (to_delete.len() - delete_failures) as u64;
        stats.returned += (messages.len() - to_delete.len()) as u64;
        stats.delete_failures += delete_failures as u64;
        stats.errors += u64::from(invocation.outcome.is_error());
        stats.timeouts += u64::from(matches!(invocation.outcome, Outcome::Timeout(_)));
        stats.batches.push(Batch {
            records: messages.len(),
            gathered_ms: gathered.as_millis() as u64,
            deleted: to_delete.len() - delete_failures,
            returned: messages.len() - to_delete.len(),
            outcome,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionError;

    fn aws(max_concurrency: Option<u32>) -> SqsMapping {
        SqsMapping {
            queue_url: String::new(),
            queue_arn: String::new(),
            region: String::new(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            scaling: Scaling { initial: 5, per_minute: 300, max: 1000 },
            max_concurrency,
            reserved_concurrency: Some(1),
            visibility_timeout: Duration::from_secs(210),
            report_batch_item_failures: true,
            enabled: true,
            time_scale: 1.0,
        }
    }

    #[test]
    fn pollers_start_at_five_whatever_the_reserved_concurrency_and_grow_while_batches_come_full() {
        let m = aws(None);
        assert_eq!((m.initial_batches(), m.max_batches()), (5, 1000));
        // 300 a minute: 5 more each second while batches come back full and none is throttled.
        assert_eq!(next_pollers(5, &m, 3, 0), 10);
        assert_eq!(next_pollers(998, &m, 3, 0), 1000);
        assert_eq!(next_pollers(10, &m, 0, 0), 10, "no full batch: no more pollers");
        // Throttled: back off by one, never under the initial five.
        assert_eq!(next_pollers(10, &m, 3, 2), 9);
        assert_eq!(next_pollers(5, &m, 3, 2), 5);
    }

    #[test]
    fn maximum_concurrency_bounds_the_pollers_from_the_start() {
        let m = aws(Some(2));
        assert_eq!((m.initial_batches(), m.max_batches()), (2, 2));
        assert_eq!(next_pollers(2, &m, 5, 0), 2);
        let m = aws(Some(7));
        assert_eq!((m.initial_batches(), m.max_batches()), (5, 7));
        assert_eq!(next_pollers(5, &m, 1, 0), 7);
    }

    #[test]
    fn the_oldest_message_is_the_oldest_undeleted_one_or_newer_than_all_seen() {
        let mut s = MappingStats::default();
        assert_eq!(s.oldest_sent_ms(true), None, "nothing seen yet");
        s.undeleted_sent_ms.insert("a".into(), 2_000);
        s.undeleted_sent_ms.insert("b".into(), 1_000);
        s.newest_sent_ms = 2_000;
        assert_eq!(s.oldest_sent_ms(false), Some(1_000));
        s.undeleted_sent_ms.clear();
        assert_eq!(s.oldest_sent_ms(true), Some(2_000), "waiting messages, none received");
        assert_eq!(s.oldest_sent_ms(false), None, "an empty queue has no oldest message");
    }

    #[test]
    fn the_peak_is_read_and_restarts_from_what_runs_now() {
        let mut s = MappingStats { running: 1, peak_running: 3, ..Default::default() };
        assert_eq!(s.take_peak(), 3);
        assert_eq!(s.take_peak(), 1);
    }

    fn ids() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    fn respond(body: &str) -> Settlement {
        settle(&Outcome::Response(Bytes::from(body.to_owned())), &ids(), true)
    }

    /// The running size of a batch never falls short of the event it is sent as.
    #[test]
    fn record_sizes_add_up_to_at_least_the_event() {
        use aws_sdk_sqs::types::Message;
        let mapping = aws(None);
        assert_eq!(serde_json::to_vec(&event(&[], "a", "r")).unwrap().len(), EMPTY_EVENT_BYTES);
        let messages: Vec<Message> =
            (0..3).map(|i| Message::builder().message_id(format!("m{i}")).body("x".repeat(i * 100)).build()).collect();
        let sum: usize = EMPTY_EVENT_BYTES + messages.iter().map(|m| record_bytes(m, &mapping)).sum::<usize>();
        let actual = serde_json::to_vec(&event(&messages, &mapping.queue_arn, &mapping.region)).unwrap().len();
        assert!(sum >= actual && sum <= actual + 1, "{sum} vs {actual}");
    }

    /// Lambda's event carries the message attributes next to their MD5 (it had only the MD5).
    #[test]
    fn the_event_carries_the_message_attributes() {
        use aws_sdk_sqs::primitives::Blob;
        use aws_sdk_sqs::types::{Message, MessageAttributeValue};
        let text = MessageAttributeValue::builder().data_type("String").string_value("eu").build().unwrap();
        let bytes =
            MessageAttributeValue::builder().data_type("Binary").binary_value(Blob::new(b"\x01\x02")).build().unwrap();
        let m = Message::builder()
            .message_id("m1")
            .body("b")
            .md5_of_message_attributes("abc")
            .message_attributes("region", text)
            .message_attributes("raw", bytes)
            .build();
        let json = serde_json::to_value(event(&[m], "arn:aws:sqs:us-east-1:1:q", "us-east-1")).unwrap();
        let attrs = &json["Records"][0]["messageAttributes"];
        assert_eq!(attrs["region"]["stringValue"], "eu");
        assert_eq!(attrs["region"]["dataType"], "String");
        assert_eq!(attrs["raw"]["binaryValue"], "AQI=");
        assert_eq!(json["Records"][0]["md5OfMessageAttributes"], "abc");
    }

    #[test]
    fn successes_delete_the_whole_batch() {
        for body in ["", "  ", "null", "{}", r#"{"batchItemFailures":null}"#, r#"{"batchItemFailures":[]}"#] {
            assert_eq!(respond(body), Settlement::DeleteAll, "{body:?}");
        }
        // Without ReportBatchItemFailures, a listed failure means nothing.
        let listed = Outcome::Response(Bytes::from_static(br#"{"batchItemFailures":[{"itemIdentifier":"a"}]}"#));
        assert_eq!(settle(&listed, &ids(), false), Settlement::DeleteAll);
    }

    #[test]
    fn listed_items_stay_and_only_they() {
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"c"},{"itemIdentifier":"b"}]}"#;
        assert_eq!(respond(body), Settlement::Keep(vec!["b".into(), "c".into()]));
    }

    #[test]
    fn unusable_responses_return_the_whole_batch() {
        for body in [
            "not json",
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemId":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"nope"}]}"#,
            r#"{"batchItemFailures":"a"}"#,
            r#""a""#,
            "[]",
        ] {
            assert!(matches!(respond(body), Settlement::ReturnAll(_)), "{body:?}: {:?}", respond(body));
        }
    }

    #[test]
    fn failed_invocations_return_the_whole_batch_even_without_reporting() {
        let error = FunctionError { error_type: "Boom".into(), error_message: "x".into() };
        for outcome in [
            Outcome::FunctionError(error.clone()),
            Outcome::InitError(error),
            Outcome::Timeout(Duration::from_secs(3)),
            Outcome::Crashed("signal: 9".into()),
            Outcome::ResponseTooLarge,
            Outcome::OutOfMemory { used_mb: 129 },
        ] {
            for report in [true, false] {
                assert!(matches!(settle(&outcome, &ids(), report), Settlement::ReturnAll(_)), "{outcome:?}");
            }
        }
    }
}
