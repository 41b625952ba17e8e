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

/// Bytes DynamoDB counts for an attribute value (its "Item sizes and formats" rules): strings
/// and binaries by length, numbers at one byte per two significant digits plus one.
fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
            significant.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        _ => 0,
    }
}

/// Size of the item a write leaves, in bytes: attribute names plus values.
pub fn item_size<'a>(attributes: impl IntoIterator<Item = (&'a String, &'a AttributeValue)>) -> usize {
    attributes.into_iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

/// Write capacity a transaction consumes: per item, 1 WCU per started KB, doubled because
/// transactional writes cost twice a standard one.
pub fn transaction_wcu(items: &[TransactWriteItem]) -> u64 {
    items
        .iter()
        .map(|item| {
            let size = if let Some(put) = item.put() {
                item_size(put.item())
            } else if let Some(update) = item.update() {
                // An `ADD #val :n` counter: the item after the update is its key plus `val`.
                let val = update.expression_attribute_values().map_or(0, |v| v.get(":n").map_or(0, value_size));
                item_size(update.key()) + "val".len() + val
            } else {
                0
            };
            2 * (size.max(1).div_ceil(1024) as u64)
        })
        .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        assert_eq!(value_size(&AttributeValue::S("Aggregate".into())), 9);
        assert_eq!(value_size(&AttributeValue::N("1".into())), 2);
        assert_eq!(value_size(&AttributeValue::N("12".into())), 2);
        assert_eq!(value_size(&AttributeValue::N("123".into())), 3);
        assert_eq!(value_size(&AttributeValue::N("1000".into())), 2, "trailing zeros are not significant");
        assert_eq!(value_size(&AttributeValue::N("1716000000".into())), 3);
        let item = [
            ("PK".to_owned(), AttributeValue::S("Aggregate".into())),
            ("val".to_owned(), AttributeValue::N("5".into())),
        ];
        assert_eq!(item_size(item.iter().map(|(k, v)| (k, v))), 2 + 9 + 3 + 2);
    }

    #[test]
    fn transactional_items_cost_two_per_kb() {
        let put = |bytes: usize| {
            let p =
                Put::builder().table_name("t").item("PK", AttributeValue::S("x".repeat(bytes - 2))).build().unwrap();
            TransactWriteItem::builder().put(p).build()
        };
        assert_eq!(transaction_wcu(&[put(100)]), 2);
        assert_eq!(transaction_wcu(&[put(1024)]), 2);
        assert_eq!(transaction_wcu(&[put(1025)]), 4);
        let update = Update::builder()
            .table_name("t")
            .key("PK", AttributeValue::S("Aggregate".into()))
            .key("SK", AttributeValue::S("2024-05-01#Latte".into()))
            .update_expression("ADD #val :n")
            .expression_attribute_values(":n", AttributeValue::N("3".into()))
            .build()
            .unwrap();
        assert_eq!(transaction_wcu(&[put(10), TransactWriteItem::builder().update(update).build()]), 4);
    }
}
