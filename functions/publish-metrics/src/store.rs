//! Where counts go: the [`Store`] trait, and its DynamoDB implementation (one
//! TransactWriteItems per chunk).

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use order_events::provenance;
use order_events::{
    DedupeKey, OrderKind, AGGREGATE_PK, COUNTER_ATTRIBUTE, DEDUPE_SK, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE,
};

use crate::{Chunk, ATTEMPT_TIMEOUT};

/// How long a dedupe record lives: longer than an event can still be counted (derived in
/// [`order_events::window`]).
pub const DEDUPE_TTL_SECS: u64 = order_events::window::DEDUPE_TTL_SECS as u64;

/// Why a chunk was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Dedupe records of these orders exist, so nothing was written: `before` were counted by
    /// another delivery, `ours` by an earlier attempt of this invocation that committed but
    /// did not answer (a timeout): those are this invocation's counts.
    AlreadyCounted { before: Vec<DedupeKey>, ours: Vec<DedupeKey> },
    /// The table refused the write for throughput (throttled): worth retrying after a backoff.
    Throttled(String),
    /// A transient fault (an internal error, a conflict, a timeout): worth retrying.
    Transient(String),
    /// DynamoDB refused something the items hold (a key or an item too large, an invalid
    /// value): the same items will always be refused, but each event alone may not be.
    Rejected(String),
    /// Retrying will not help, whatever the items (permissions, missing table).
    Permanent(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::AlreadyCounted { before, ours } => {
                let keys = |k: &[DedupeKey]| k.iter().map(DedupeKey::partition_key).collect::<Vec<_>>().join(", ");
                write!(f, "already counted: {}", keys(before))?;
                if !ours.is_empty() {
                    write!(f, "; by this invocation's earlier attempt: {}", keys(ours))?;
                }
                Ok(())
            }
            WriteError::Throttled(m) => write!(f, "throttled: {m}"),
            WriteError::Transient(m) => write!(f, "transient: {m}"),
            WriteError::Rejected(m) => write!(f, "rejected: {m}"),
            WriteError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

/// Writes a chunk atomically: all its dedupe records and counter increments, or nothing.
/// Returns the write capacity the transaction consumed ([`transaction_wcu`] of its items).
pub trait Store {
    fn write(&self, chunk: &Chunk) -> impl Future<Output = Result<u64, WriteError>> + Send;

    /// The write capacity writing `chunk` costs, known before writing it (what the write
    /// budget is charged).
    fn cost(&self, chunk: &Chunk) -> u64;
}

/// How a `TransactWriteItems` call failed, in DynamoDB's own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxError {
    /// `TransactionCanceledException`: one reason code per item, in order (`None` for an item
    /// that was fine), and for an item whose condition failed, the existing item's
    /// `countedBy` when DynamoDB returned it (`ReturnValuesOnConditionCheckFailure: ALL_OLD`).
    Cancelled { reasons: Vec<String>, counted_by: Vec<Option<String>>, message: String },
    /// `ValidationException` for the request as a whole (for example two operations on one
    /// item, or a key over its size limit).
    Validation(String),
    /// Throttling: `ProvisionedThroughputExceededException`, `RequestLimitExceeded`,
    /// `ThrottlingException`.
    Throttled(String),
    /// Internal errors, timeouts and connection failures.
    Transient(String),
    /// Anything else (access denied, no such table, ...).
    Other(String),
}

/// The one DynamoDB call the handler makes, so tests can put a strict fake behind it.
pub trait Dynamo: Send + Sync {
    fn transact_write_items(&self, items: Vec<TransactWriteItem>) -> impl Future<Output = Result<(), TxError>> + Send;
}

impl Dynamo for aws_sdk_dynamodb::Client {
    async fn transact_write_items(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
        match self.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(tx_error(e)),
        }
    }
}

/// Reads an SDK error as a [`TxError`].
pub fn tx_error(error: SdkError<TransactWriteItemsError>) -> TxError {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let text = |e: &dyn std::error::Error| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e));
    let service = match error {
        SdkError::ServiceError(e) => e.into_err(),
        e @ (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)) => {
            return TxError::Transient(text(&e));
        }
        other => return TxError::Other(text(&other)),
    };
    match service {
        TransactWriteItemsError::TransactionCanceledException(tc) => TxError::Cancelled {
            reasons: tc.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect(),
            counted_by: tc
                .cancellation_reasons()
                .iter()
                .map(|r| r.item()?.get(provenance::COUNTED_BY)?.as_s().ok().cloned())
                .collect(),
            message: tc.message().unwrap_or_default().to_owned(),
        },
        e @ (TransactWriteItemsError::ProvisionedThroughputExceededException(_)
        | TransactWriteItemsError::RequestLimitExceeded(_)
        | TransactWriteItemsError::ThrottlingException(_)) => TxError::Throttled(text(&e)),
        e @ (TransactWriteItemsError::InternalServerError(_)
        | TransactWriteItemsError::TransactionInProgressException(_)) => TxError::Transient(text(&e)),
        e => match e.code() {
            Some("ValidationException") => TxError::Validation(text(&e)),
            Some("ThrottlingException") => TxError::Throttled(text(&e)),
            Some("ServiceUnavailable" | "InternalFailure") => TxError::Transient(text(&e)),
            _ => TxError::Other(text(&e)),
        },
    }
}

/// Cancellation codes that mean the table refused the transaction for throughput
/// (TransactWriteItems' API reference: `ProvisionedThroughputExceeded` on a provisioned table,
/// `ThrottlingError` while an on-demand table scales, `RequestLimitExceeded` for the account).
const THROTTLE_CODES: [&str; 3] = ["ProvisionedThroughputExceeded", "ThrottlingError", "RequestLimitExceeded"];

/// DynamoDB's words for items whose key does not fit the table's key schema. PublishMetrics
/// always writes `PK` and `SK` as strings, so these say the table is not the one the stack
/// declares (a key schema made by hand, another table): every record would be refused alike,
/// so it is a failed write (returned, retried, alarmed as failed records), not a bad record.
const SCHEMA_MISMATCH: [&str; 3] = ["does not match the schema", "Missing the key", "Type mismatch for key"];

/// Other cancellation codes worth retrying: a concurrent transaction held an item.
const TRANSIENT_CODES: [&str; 1] = ["TransactionConflict"];

/// What a failed transaction means for a chunk: which orders were counted before, whether to
/// retry, or whether the items themselves were refused.
pub fn classify(chunk: &Chunk, error: TxError) -> WriteError {
    match error {
        TxError::Cancelled { reasons, counted_by, message } => {
            // Dedupe records come first: item `i < events.len()` is event `i`'s.
            let (mut before, mut ours) = (Vec::new(), Vec::new());
            for (i, code) in reasons.iter().enumerate() {
                let Some(p) = chunk.events.get(i).filter(|_| code == "ConditionalCheckFailed") else { continue };
                let holder = counted_by.get(i).and_then(Option::as_deref);
                if holder == Some(&*p.counted_by) {
                    ours.push(p.event.dedupe.clone());
                } else {
                    before.push(p.event.dedupe.clone());
                }
            }
            if !before.is_empty() || !ours.is_empty() {
                WriteError::AlreadyCounted { before, ours }
            } else if reasons.iter().any(|c| c == "ValidationError") {
                WriteError::Rejected(format!("transaction cancelled: {reasons:?}: {message}"))
            } else if reasons.iter().any(|c| THROTTLE_CODES.contains(&c.as_str())) {
                WriteError::Throttled(format!("transaction cancelled: {reasons:?}"))
            } else if reasons.iter().any(|c| TRANSIENT_CODES.contains(&c.as_str())) {
                WriteError::Transient(format!("transaction cancelled: {reasons:?}"))
            } else {
                WriteError::Permanent(format!("transaction cancelled: {reasons:?}: {message}"))
            }
        }
        TxError::Validation(m) if SCHEMA_MISMATCH.iter().any(|p| m.contains(p)) => WriteError::Permanent(format!(
            "the table's key schema is not the stack's ({PARTITION_KEY} and {SORT_KEY}, strings): {m}"
        )),
        TxError::Validation(m) => WriteError::Rejected(m),
        TxError::Throttled(m) => WriteError::Throttled(m),
        TxError::Transient(m) => WriteError::Transient(m),
        TxError::Other(m) => WriteError::Permanent(m),
    }
}

/// The metrics table, behind the real client or a fake.
#[derive(Clone, Debug)]
pub struct DynamoStore<D = aws_sdk_dynamodb::Client> {
    client: D,
    table: String,
}

/// The DynamoDB client as PublishMetrics uses it: no retries of its own (the handler retries
/// with the invocation's deadline in view) and every attempt bounded by [`ATTEMPT_TIMEOUT`].
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(config)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

impl<D> DynamoStore<D> {
    pub fn new(client: D, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    pub fn client(&self) -> &D {
        &self.client
    }

    /// The transaction's items: dedupe records first (their index is the event's), each with
    /// the event's provenance ([`order_events::provenance`]), then one update per counter item.
    pub fn transaction(&self, chunk: &Chunk, now_secs: u64) -> Result<Vec<TransactWriteItem>, WriteError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| WriteError::Permanent(e.to_string());
        let expires = (now_secs + DEDUPE_TTL_SECS).to_string();
        let time =
            |t: &chrono::DateTime<chrono::Utc>| AttributeValue::S(t.to_rfc3339_opts(provenance::TIME_FORMAT, true));
        let mut items = Vec::with_capacity(chunk.items());
        for p in &chunk.events {
            let drink = match &p.event.kind {
                OrderKind::WaitingCompletion { drink } => Some(AttributeValue::S(drink.as_str().to_owned())),
                OrderKind::Completed | OrderKind::Cancelled => None,
            };
            let put = Put::builder()
                .table_name(&self.table)
                .item(PARTITION_KEY, AttributeValue::S(p.event.dedupe.partition_key()))
                .item(SORT_KEY, AttributeValue::S(DEDUPE_SK.to_owned()))
                .item(TTL_ATTRIBUTE, AttributeValue::N(expires.clone()))
                .item(provenance::EVENT_ID, AttributeValue::S(p.event.id.clone()))
                .item(provenance::DETAIL_TYPE, AttributeValue::S(p.event.detail_type().as_str().to_owned()))
                .item(provenance::EVENT_TIME, time(&p.event.time))
                .item(provenance::COUNTED_AT, time(&p.received_at))
                .item(provenance::COUNTED_BY, AttributeValue::S(p.counted_by.to_string()))
                // The existing record's `countedBy` tells this invocation's own earlier write.
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            let put = match p.sent_at {
                Some(sent) => put.item(provenance::SENT_AT, time(&sent)),
                None => put,
            };
            let put = match drink {
                Some(d) => put.item(provenance::DRINK, d),
                None => put,
            };
            let put = put.condition_expression("attribute_not_exists(PK)").build().map_err(invalid)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (sort_key, count) in &chunk.counters {
            let update = Update::builder()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(AGGREGATE_PK.to_owned()))
                .key(SORT_KEY, AttributeValue::S(sort_key.clone()))
                .update_expression("ADD #val :n")
                .expression_attribute_names("#val", COUNTER_ATTRIBUTE)
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
/// transactional writes cost twice a standard one (DynamoDB Developer Guide, "Capacity
/// management for transactions").
pub fn transaction_wcu(items: &[TransactWriteItem]) -> u64 {
    items
        .iter()
        .map(|item| {
            let size = if let Some(put) = item.put() {
                item_size(put.item())
            } else if let Some(update) = item.update() {
                // An `ADD #val :n` counter: the item after the update is its key plus `val`.
                let val = update.expression_attribute_values().map_or(0, |v| v.get(":n").map_or(0, value_size));
                item_size(update.key()) + COUNTER_ATTRIBUTE.len() + val
            } else {
                0
            };
            order_events::capacity::TRANSACTION_ITEM_WCU * (size.max(1).div_ceil(1024) as u64)
        })
        .sum()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl<D: Dynamo> Store for DynamoStore<D> {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        let items = self.transaction(chunk, now_secs())?;
        let wcu = transaction_wcu(&items);
        self.client.transact_write_items(items).await.map_err(|e| classify(chunk, e))?;
        Ok(wcu)
    }

    fn cost(&self, chunk: &Chunk) -> u64 {
        // Items that cannot be built are refused by `write` without a call: they cost nothing.
        self.transaction(chunk, now_secs()).map_or(0, |items| transaction_wcu(&items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_neither_retries_nor_outlives_the_attempt_budget() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let c = client(&sdk);
        let t = c.config().timeout_config().expect("timeouts set");
        assert_eq!(t.operation_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(c.config().retry_config().expect("retry set").max_attempts(), 1);
    }

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
