//! An SQS event source mapping as Lambda runs one: pollers (one per allowed concurrent
//! invocation) gather a batch up to the batch size or until the batching window closes, invoke
//! the function, and delete what the response says succeeded. A failed invocation deletes
//! nothing: its messages come back when their visibility timeout ends, and the queue's own
//! redrive policy moves a message to the dead-letter queue after `maxReceiveCount` receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::function::{FunctionConfig, Instance, Outcome};
use crate::Error;

/// The mapping as the template configures it.
#[derive(Clone, Debug, PartialEq)]
pub struct SqsMapping {
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub batch_size: u32,
    pub batching_window: Duration,
    /// Concurrent invocations: the least of `ScalingConfig.MaximumConcurrency` and the
    /// function's reserved concurrency. Zero runs nothing, as a throttled function.
    pub concurrency: u32,
    /// Overrides the queue's visibility timeout on receive (to shorten a demo); `None` keeps the
    /// queue's, as Lambda does.
    pub visibility_timeout: Option<Duration>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
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
    /// Deletes SQS refused (a receipt handle that expired while the function ran): those
    /// messages come back and are delivered again.
    pub delete_failures: u64,
    pub batches: Vec<Batch>,
}

impl std::fmt::Display for MappingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invocations {} (cold {}) | errors {} | timeouts {} | records {} | deleted {} | returned {}",
            self.invocations, self.cold_starts, self.errors, self.timeouts, self.records, self.deleted, self.returned
        )
    }
}

/// Polls the queue with `mapping.concurrency` pollers, each with its own environment of
/// `function`, until `stop` turns true; a batch being gathered or run is finished first.
pub async fn run(
    sqs: aws_sdk_sqs::Client,
    mapping: SqsMapping,
    function: Arc<FunctionConfig>,
    stats: Arc<Mutex<MappingStats>>,
    stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut pollers = tokio::task::JoinSet::new();
    for index in 0..mapping.concurrency {
        let poller = Poller {
            sqs: sqs.clone(),
            mapping: mapping.clone(),
            instance: Instance::new(function.clone(), index as usize),
            stats: stats.clone(),
            stop: stop.clone(),
        };
        pollers.spawn(poller.run());
    }
    let mut first_error = None;
    while let Some(done) = pollers.join_next().await {
        let result = done.map_err(|e| Error::Poller { function: function.name.clone(), why: e.to_string() });
        if let Err(e) = result.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The event Lambda passes for `messages` received from the queue `queue_arn`.
pub fn event(messages: &[Message], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id().map(str::to_owned);
        record.receipt_handle = m.receipt_handle().map(str::to_owned);
        record.body = m.body().map(str::to_owned);
        record.md5_of_body = m.md5_of_body().map(str::to_owned);
        record.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
        record.attributes = m
            .attributes()
            .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect::<HashMap<_, _>>())
            .unwrap_or_default();
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(queue_arn.to_owned());
        record.aws_region = Some(region.to_owned());
        event.records.push(record);
    }
    event
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
    sqs: aws_sdk_sqs::Client,
    mapping: SqsMapping,
    instance: Instance,
    stats: Arc<Mutex<MappingStats>>,
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

impl Poller {
    async fn run(mut self) -> Result<(), Error> {
        let result = self.poll().await;
        self.instance.shutdown().await;
        result
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn poll(&mut self) -> Result<(), Error> {
        while !self.stopping() {
            let (messages, gathered) = self.gather().await?;
            if messages.is_empty() {
                continue;
            }
            self.invoke(messages, gathered).await?;
        }
        Ok(())
    }

    /// Receives until the batch is full or the window (from the first message) closes.
    async fn gather(&mut self) -> Result<(Vec<Message>, Duration), Error> {
        let m = &self.mapping;
        let mut messages: Vec<Message> = Vec::new();
        let mut first: Option<Instant> = None;
        while messages.len() < m.batch_size as usize {
            if messages.is_empty() && self.stopping() {
                break;
            }
            let left = m.batch_size as usize - messages.len();
            let wait = match first {
                // Short polls, so a stop is seen within a second.
                None => 1,
                Some(t) => m.batching_window.saturating_sub(t.elapsed()).as_secs().clamp(0, 1) as i32,
            };
            let out = self
                .sqs
                .receive_message()
                .queue_url(&m.queue_url)
                .max_number_of_messages(left.min(10) as i32)
                .wait_time_seconds(wait)
                .set_visibility_timeout(m.visibility_timeout.map(|v| (v.as_secs_f64().ceil() as i32).max(1)))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| sqs_error("ReceiveMessage", &m.queue_url, e))?;
            if !out.messages().is_empty() {
                first.get_or_insert_with(Instant::now);
            }
            for m in out.messages() {
                // Received again within one window (its visibility timeout is shorter than the
                // window): one record, with the newest receipt handle, the only one still valid.
                match messages.iter_mut().find(|k| k.message_id() == m.message_id()) {
                    Some(known) => *known = m.clone(),
                    None => messages.push(m.clone()),
                }
            }
            match first {
                Some(t) if t.elapsed() >= m.batching_window => break,
                _ => {}
            }
        }
        Ok((messages, first.map_or(Duration::ZERO, |t| t.elapsed())))
    }

    async fn invoke(&mut self, messages: Vec<Message>, gathered: Duration) -> Result<(), Error> {
        let ids: Vec<String> = messages.iter().map(|m| m.message_id().unwrap_or_default().to_owned()).collect();
        let payload =
            serde_json::to_vec(&event(&messages, &self.mapping.queue_arn, &self.mapping.region)).unwrap_or_default();
        let invocation = self.instance.invoke(Bytes::from(payload)).await?;
        let settlement = settle(&invocation.outcome, &ids, self.mapping.report_batch_item_failures);
        let to_delete: Vec<&Message> = match &settlement {
            Settlement::DeleteAll => messages.iter().collect(),
            Settlement::Keep(keep) => {
                messages.iter().filter(|m| !keep.iter().any(|k| Some(k.as_str()) == m.message_id())).collect()
            }
            Settlement::ReturnAll(_) => Vec::new(),
        };
        let delete_failures = delete(&self.sqs, &self.mapping.queue_url, &to_delete).await?;
        let outcome = match (&invocation.outcome, &settlement) {
            (Outcome::Response(_), Settlement::DeleteAll) => BatchOutcome::Succeeded,
            (Outcome::Response(_), Settlement::Keep(_)) => BatchOutcome::Partial,
            (Outcome::Response(_), Settlement::ReturnAll(_)) => BatchOutcome::InvalidResponse,
            (Outcome::FunctionError(_) | Outcome::ResponseTooLarge, _) => BatchOutcome::FunctionError,
            (Outcome::InitError(_), _) => BatchOutcome::InitError,
            (Outcome::Timeout(_), _) => BatchOutcome::Timeout,
            (Outcome::Crashed(_), _) => BatchOutcome::Crashed,
        };
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
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

    fn ids() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    fn respond(body: &str) -> Settlement {
        settle(&Outcome::Response(Bytes::from(body.to_owned())), &ids(), true)
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
        ] {
            for report in [true, false] {
                assert!(matches!(settle(&outcome, &ids(), report), Settlement::ReturnAll(_)), "{outcome:?}");
            }
        }
    }
}
