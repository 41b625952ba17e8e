//! Where counts go: the [`Store`] trait, and its DynamoDB implementation (one
//! TransactWriteItems per chunk).

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use order_events::AGGREGATE_PK;

use crate::Chunk;

/// How long a dedupe record lives: longer than an event can still arrive (EventBridge retries
/// for up to a day, SQS keeps it 4 days, the DLQ 14 days from the first enqueue).
pub const DEDUPE_TTL_SECS: u64 = 16 * 24 * 3600;

/// Why a chunk was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// These event IDs were counted before: their dedupe records exist. Nothing was written.
    AlreadyCounted(Vec<String>),
    /// Throttling or a transient fault: worth retrying.
    Transient(String),
    /// Retrying will not help (validation, permissions, missing table).
    Permanent(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::AlreadyCounted(ids) => write!(f, "already counted: {}", ids.join(", ")),
            WriteError::Transient(m) => write!(f, "transient: {m}"),
            WriteError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

/// Writes a chunk atomically: all its dedupe records and counter increments, or nothing.
pub trait Store {
    fn write(&self, chunk: &Chunk) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// The metrics table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The dedupe record's partition key for an event.
pub fn dedupe_pk(event_id: &str) -> String {
    format!("Dedupe#{event_id}")
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    /// The transaction's items: dedupe records first (their index is the event's), then updates.
    pub fn transaction(&self, chunk: &Chunk, now_secs: u64) -> Result<Vec<TransactWriteItem>, WriteError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| WriteError::Permanent(e.to_string());
        let expires = (now_secs + DEDUPE_TTL_SECS).to_string();
        let mut items = Vec::with_capacity(chunk.items());
        for p in &chunk.events {
            let put = Put::builder()
                .table_name(&self.table)
                .item("PK", AttributeValue::S(dedupe_pk(&p.event.id)))
                .item("SK", AttributeValue::S("Dedupe".to_owned()))
                .item("ttl", AttributeValue::N(expires.clone()))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (key, count) in &chunk.counters {
            let update = Update::builder()
                .table_name(&self.table)
                .key("PK", AttributeValue::S(AGGREGATE_PK.to_owned()))
                .key("SK", AttributeValue::S(key.sort_key()))
                .update_expression("ADD #val :n")
                .expression_attribute_names("#val", "val")
                .expression_attribute_values(":n", AttributeValue::N(count.to_string()))
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }
}

/// Cancellation codes worth retrying.
const TRANSIENT_CODES: [&str; 4] =
    ["ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict", "RequestLimitExceeded"];

/// Reads a failed TransactWriteItems: which events were duplicates, or whether to retry.
pub fn classify(chunk: &Chunk, error: SdkError<TransactWriteItemsError>) -> WriteError {
    let service = match error {
        SdkError::ServiceError(e) => e.into_err(),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return WriteError::Transient(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&error)));
        }
        other => return WriteError::Permanent(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&other))),
    };
    match service {
        TransactWriteItemsError::TransactionCanceledException(tc) => {
            let reasons = tc.cancellation_reasons();
            let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
            let duplicates: Vec<String> = codes
                .iter()
                .enumerate()
                .filter(|(i, c)| **c == "ConditionalCheckFailed" && *i < chunk.events.len())
                .map(|(i, _)| chunk.events[i].event.id.clone())
                .collect();
            if !duplicates.is_empty() {
                WriteError::AlreadyCounted(duplicates)
            } else if codes.iter().any(|c| TRANSIENT_CODES.contains(c)) {
                WriteError::Transient(format!("transaction cancelled: {codes:?}"))
            } else {
                WriteError::Permanent(format!("transaction cancelled: {codes:?}: {}", tc.message().unwrap_or_default()))
            }
        }
        e @ (TransactWriteItemsError::ProvisionedThroughputExceededException(_)
        | TransactWriteItemsError::RequestLimitExceeded(_)
        | TransactWriteItemsError::ThrottlingException(_)
        | TransactWriteItemsError::InternalServerError(_)
        | TransactWriteItemsError::TransactionInProgressException(_)) => WriteError::Transient(e.to_string()),
        e => WriteError::Permanent(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e))),
    }
}

impl Store for DynamoStore {
    async fn write(&self, chunk: &Chunk) -> Result<(), WriteError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let items = self.transaction(chunk, now)?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(chunk, e)),
        }
    }
}
