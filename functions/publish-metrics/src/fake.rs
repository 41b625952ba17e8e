//! An in-memory DynamoDB table behind the [`Dynamo`] seam, at least as strict as DynamoDB's
//! `TransactWriteItems` (its API reference and "Service, account, and table quotas"):
//! 1 to 100 items; no two operations on one item (`ValidationException`); key attributes
//! present, non-empty strings within 2048 (partition) and 1024 (sort) bytes
//! (`ValidationException`); items within 400 KB (cancelled with `ValidationError`); condition
//! failures cancel the whole transaction with one reason per item; a table other than its own is
//! `ResourceNotFoundException`; `ADD` to a value that is not a number cancels with
//! `ValidationError`. Item sizes follow DynamoDB's rules in an implementation of their own, not
//! the handler's. It applies all or nothing, and refuses (panics on) any expression it does not
//! implement rather than guess.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use order_events::{AGGREGATE_PK, COUNTER_ATTRIBUTE, PARTITION_KEY, SORT_KEY};

use crate::store::{Dynamo, TxError};

/// DynamoDB's limits.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
pub const MAX_SORT_KEY_BYTES: usize = 1024;
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

type Item = HashMap<String, AttributeValue>;

#[derive(Default)]
struct State {
    items: BTreeMap<(String, String), Item>,
    faults: VecDeque<TxError>,
    calls: usize,
    committed: usize,
}

/// The table named `table`. Faults queued with [`MemoryDynamo::inject`] answer the next calls,
/// one each, before anything is checked or written. Each call takes `latency` of (tokio) time.
pub struct MemoryDynamo {
    table: String,
    schema: KeySchema,
    state: Mutex<State>,
    latency: Duration,
}

/// An item's size as DynamoDB counts it ("Item sizes and formats"), written apart from the
/// handler's own estimate so that a mistake there is not a mistake here: each attribute's
/// name in UTF-8 bytes plus its value: a string's or binary's bytes; a number's significant
/// digits, two to a byte, plus one; one byte for a boolean or null.
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::N(n) => {
                        let digits: Vec<char> = n.chars().filter(char::is_ascii_digit).collect();
                        let first = digits.iter().position(|c| *c != '0');
                        let last = digits.iter().rposition(|c| *c != '0');
                        let significant = match (first, last) {
                            (Some(f), Some(l)) => l - f + 1,
                            _ => 1,
                        };
                        significant.div_ceil(2) + 1
                    }
                    AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                    other => panic!("the fake does not size {other:?}"),
                }
        })
        .sum()
}

/// The table's key schema: the partition key's name, and the sort key's if it has one.
#[derive(Clone, Debug)]
pub struct KeySchema {
    pub partition: String,
    pub sort: Option<String>,
}

impl Default for KeySchema {
    /// The stack's: `PK` and `SK`, strings.
    fn default() -> Self {
        KeySchema { partition: PARTITION_KEY.to_owned(), sort: Some(SORT_KEY.to_owned()) }
    }
}

fn key_of(item: &Item, what: &str, schema: &KeySchema) -> Result<(String, String), TxError> {
    let key = |name: &str, max: usize| {
        match item.get(name) {
        Some(AttributeValue::S(s)) if s.is_empty() => Err(TxError::Validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
        ))),
        Some(AttributeValue::S(s)) if s.len() > max => Err(TxError::Validation(format!(
            "One or more parameter values were invalid: Size of {what} key {name} has exceeded the maximum size limit of {max} bytes"
        ))),
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(TxError::Validation(format!("One or more parameter values were invalid: Missing the key {name} in the item"))),
    }
    };
    let sort = match &schema.sort {
        Some(name) => key(name, MAX_SORT_KEY_BYTES)?,
        None => String::new(),
    };
    Ok((key(&schema.partition, MAX_PARTITION_KEY_BYTES)?, sort))
}

/// One operation of a transaction, as this fake understands it.
enum Op {
    /// `Put` of a whole item, optionally `attribute_not_exists(PK)`, optionally returning the
    /// existing item when the condition fails.
    Put { item: Item, if_absent: bool, all_old: bool },
    /// `ADD #val :n` on a counter.
    Add { key: Item, by: i128 },
}

fn parse(item: &TransactWriteItem, schema: &KeySchema) -> Result<(Op, (String, String)), TxError> {
    if let Some(put) = item.put() {
        let if_absent = match put.condition_expression() {
            None => false,
            Some("attribute_not_exists(PK)") => true,
            Some(other) => panic!("the fake does not implement the condition {other:?}"),
        };
        let key = key_of(put.item(), "the", schema)?;
        let all_old = put.return_values_on_condition_check_failure()
            == Some(&aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld);
        return Ok((Op::Put { item: put.item().clone(), if_absent, all_old }, key));
    }
    if let Some(update) = item.update() {
        assert_eq!(update.update_expression(), "ADD #val :n", "the fake implements only the counter update");
        assert!(update.condition_expression().is_none(), "the fake implements no update conditions");
        let names = update.expression_attribute_names().expect("#val is named");
        assert_eq!(names.get("#val").map(String::as_str), Some(COUNTER_ATTRIBUTE));
        let by = match update.expression_attribute_values().and_then(|v| v.get(":n")) {
            Some(AttributeValue::N(n)) => n.parse::<i128>().map_err(|e| TxError::Validation(format!("{n}: {e}")))?,
            other => return Err(TxError::Validation(format!("ADD needs a number, got {other:?}"))),
        };
        let names_match = update.key().keys().all(|k| *k == schema.partition || Some(k) == schema.sort.as_ref());
        if !names_match || update.key().len() != 1 + usize::from(schema.sort.is_some()) {
            return Err(TxError::Validation("The provided key element does not match the schema".into()));
        }
        let key = key_of(update.key(), "the", schema)?;
        return Ok((Op::Add { key: update.key().clone(), by }, key));
    }
    panic!("the fake implements Put and Update only: {item:?}")
}

impl MemoryDynamo {
    pub fn new(table: &str) -> Self {
        Self::with_latency(table, Duration::ZERO)
    }

    pub fn with_latency(table: &str, latency: Duration) -> Self {
        MemoryDynamo { table: table.to_owned(), schema: KeySchema::default(), state: Mutex::default(), latency }
    }

    /// A table with another key schema than the stack's (one made by hand).
    pub fn with_key_schema(table: &str, schema: KeySchema) -> Self {
        MemoryDynamo { schema, ..Self::new(table) }
    }

    /// Queues faults for the next calls, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = TxError>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Calls made, and calls that committed.
    pub fn calls(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.calls, s.committed)
    }

    /// The counters: sort key -> `val` of every `Aggregate` item.
    pub fn counters(&self) -> BTreeMap<String, i128> {
        let s = self.state.lock().unwrap();
        s.items
            .iter()
            .filter(|((pk, _), _)| pk == AGGREGATE_PK)
            .map(|((_, sk), item)| {
                let val = match item.get(COUNTER_ATTRIBUTE) {
                    Some(AttributeValue::N(n)) => n.parse().unwrap(),
                    other => panic!("counter {sk} holds {other:?}"),
                };
                (sk.clone(), val)
            })
            .collect()
    }

    /// The dedupe records: partition key -> the item.
    pub fn dedupe_records(&self) -> BTreeMap<String, Item> {
        let s = self.state.lock().unwrap();
        s.items
            .iter()
            .filter(|((pk, _), _)| pk != AGGREGATE_PK)
            .map(|((pk, _), item)| (pk.clone(), item.clone()))
            .collect()
    }

    /// Partition keys of the items that are not counters (the dedupe records).
    pub fn other_partition_keys(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.items.keys().filter(|(pk, _)| pk != AGGREGATE_PK).map(|(pk, _)| pk.clone()).collect()
    }

    fn transact(&self, items: &[TransactWriteItem]) -> Result<(), TxError> {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        if let Some(fault) = s.faults.pop_front() {
            return Err(fault);
        }
        if items.is_empty() || items.len() > crate::MAX_TRANSACTION_ITEMS {
            return Err(TxError::Validation(format!(
                "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100 (has {})",
                items.len()
            )));
        }
        let table = |i: &TransactWriteItem| {
            i.put().map(|p| p.table_name().to_owned()).or_else(|| i.update().map(|u| u.table_name().to_owned()))
        };
        if let Some(other) = items.iter().filter_map(table).find(|t| *t != self.table) {
            return Err(TxError::Other(format!(
                "ResourceNotFoundException: Requested resource not found: Table: {other} not found"
            )));
        }
        let mut ops = Vec::with_capacity(items.len());
        let mut keys = std::collections::HashSet::new();
        for item in items {
            let (op, key) = parse(item, &self.schema)?;
            if !keys.insert(key.clone()) {
                return Err(TxError::Validation(
                    "Transaction request cannot include multiple operations on one item".into(),
                ));
            }
            ops.push((op, key));
        }
        // Every item is judged before anything is written; one failure cancels all.
        let mut reasons = Vec::with_capacity(ops.len());
        let mut counted_by = Vec::with_capacity(ops.len());
        let mut after = Vec::with_capacity(ops.len());
        for (op, key) in ops {
            let existing = s.items.get(&key);
            // DynamoDB returns the existing item only when asked, and only for a failed condition.
            counted_by.push(match (&op, existing) {
                (Op::Put { if_absent: true, all_old: true, .. }, Some(old)) => {
                    old.get(order_events::provenance::COUNTED_BY).and_then(|v| v.as_s().ok()).cloned()
                }
                _ => None,
            });
            let (reason, new) = match op {
                Op::Put { if_absent: true, .. } if existing.is_some() => ("ConditionalCheckFailed", None),
                Op::Put { item, .. } => {
                    (if item_size(&item) > MAX_ITEM_BYTES { "ValidationError" } else { "None" }, Some(item))
                }
                Op::Add { key: k, by } => {
                    let mut item = existing.cloned().unwrap_or(k);
                    match item.get(COUNTER_ATTRIBUTE) {
                        None => Some(0),
                        Some(AttributeValue::N(n)) => n.parse::<i128>().ok(),
                        // "An operand in the update expression has an incorrect data type".
                        Some(_) => None,
                    }
                    .map_or(("ValidationError", None), |old| {
                        item.insert(COUNTER_ATTRIBUTE.to_owned(), AttributeValue::N((old + by).to_string()));
                        (if item_size(&item) > MAX_ITEM_BYTES { "ValidationError" } else { "None" }, Some(item))
                    })
                }
            };
            reasons.push(reason.to_owned());
            after.push((key, new));
        }
        if reasons.iter().any(|r| r != "None") {
            return Err(TxError::Cancelled {
                message: format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons {reasons:?}"
                ),
                reasons,
                counted_by,
            });
        }
        for (key, item) in after {
            s.items.insert(key, item.expect("judged"));
        }
        s.committed += 1;
        Ok(())
    }
}

impl Dynamo for MemoryDynamo {
    async fn transact_write_items(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.transact(&items)
    }
}

/// Order events and SQS batches as the tests send them.
pub mod events {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

    /// An `OrderManager.WaitingCompletion` event in the workshop load test's shape; the event ID
    /// is also the order ID.
    pub fn waiting(id: &str, drink: &str, time: &str) -> String {
        serde_json::json!({
            "version": "0", "id": id, "source": order_events::SOURCE,
            "detail-type": "OrderManager.WaitingCompletion", "time": time, "region": "us-east-1", "resources": [],
            "detail": {"Message": "m", "orderId": id, "ORDERSTATE": "Completed", "userId": "1",
                "drinkOrder": {"userId": "1", "drink": drink}},
        })
        .to_string()
    }

    /// An event of `detail_type` whose order ID is its event ID.
    pub fn state(id: &str, detail_type: &str, time: &str) -> String {
        serde_json::json!({
            "version": "0", "id": id, "source": order_events::SOURCE,
            "detail-type": detail_type, "time": time, "detail": {"orderId": id, "orderNumber": 7, "state": "x"},
        })
        .to_string()
    }

    /// An SQS batch of `bodies`, message IDs `m0`, `m1`, ...
    pub fn batch(bodies: &[String]) -> SqsEvent {
        let mut event = SqsEvent::default();
        for (i, b) in bodies.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.clone());
            event.records.push(m);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::{Put, Update};

    use super::*;

    fn put(pk: &str, sk: &str, if_absent: bool) -> TransactWriteItem {
        let mut p = Put::builder()
            .table_name("t")
            .item(PARTITION_KEY, AttributeValue::S(pk.into()))
            .item(SORT_KEY, AttributeValue::S(sk.into()));
        if if_absent {
            p = p.condition_expression("attribute_not_exists(PK)");
        }
        TransactWriteItem::builder().put(p.build().unwrap()).build()
    }

    fn add(sk: &str, n: i64) -> TransactWriteItem {
        let u = Update::builder()
            .table_name("t")
            .key(PARTITION_KEY, AttributeValue::S(AGGREGATE_PK.into()))
            .key(SORT_KEY, AttributeValue::S(sk.into()))
            .update_expression("ADD #val :n")
            .expression_attribute_names("#val", COUNTER_ATTRIBUTE)
            .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
            .build()
            .unwrap();
        TransactWriteItem::builder().update(u).build()
    }

    #[test]
    fn two_operations_on_one_item_are_refused_whole() {
        let db = MemoryDynamo::new("t");
        let err = db.transact(&[add("d#TotalSales", 1), add("d#Latte", 1), add("d#TotalSales", 1)]).unwrap_err();
        assert!(matches!(err, TxError::Validation(ref m) if m.contains("multiple operations on one item")), "{err:?}");
        assert!(db.counters().is_empty(), "nothing applied");
        assert!(db.transact(&[put("Dedupe#a", "Dedupe", true), put("Dedupe#a", "Dedupe", true)]).is_err());
    }

    #[test]
    fn item_count_limits() {
        let db = MemoryDynamo::new("t");
        assert!(matches!(db.transact(&[]), Err(TxError::Validation(_))));
        let hundred: Vec<_> = (0..100).map(|i| add(&format!("d#{i}"), 1)).collect();
        db.transact(&hundred).unwrap();
        let more: Vec<_> = (0..101).map(|i| add(&format!("d#{i}"), 1)).collect();
        assert!(matches!(db.transact(&more), Err(TxError::Validation(ref m)) if m.contains("100")));
    }

    #[test]
    fn key_size_limits() {
        let db = MemoryDynamo::new("t");
        db.transact(&[put(&"p".repeat(2048), &"s".repeat(1024), false)]).unwrap();
        assert!(matches!(db.transact(&[put(&"p".repeat(2049), "s", false)]), Err(TxError::Validation(_))));
        assert!(matches!(db.transact(&[put("p", &"s".repeat(1025), false)]), Err(TxError::Validation(_))));
        assert!(matches!(db.transact(&[put("", "s", false)]), Err(TxError::Validation(_))));
        assert!(matches!(db.transact(&[add(&"s".repeat(1025), 1)]), Err(TxError::Validation(_))));
    }

    #[test]
    fn item_size_limit_cancels_with_a_reason_per_item() {
        let db = MemoryDynamo::new("t");
        let big = |bytes: usize| {
            let p = Put::builder()
                .table_name("t")
                .item(PARTITION_KEY, AttributeValue::S("p".into()))
                .item(SORT_KEY, AttributeValue::S("s".into()))
                .item("x", AttributeValue::S("x".repeat(bytes)))
                .build()
                .unwrap();
            TransactWriteItem::builder().put(p).build()
        };
        // PK + p + SK + s + x: 7 bytes besides the value.
        db.transact(&[big(MAX_ITEM_BYTES - 7)]).unwrap();
        match db.transact(&[add("d#Latte", 1), big(MAX_ITEM_BYTES - 6)]) {
            Err(TxError::Cancelled { reasons, .. }) => assert_eq!(reasons, ["None", "ValidationError"]),
            other => panic!("{other:?}"),
        }
        assert!(db.counters().is_empty());
    }

    #[test]
    fn another_table_is_not_found_and_nothing_is_written() {
        let db = MemoryDynamo::new("t");
        let mut other = add("d#Latte", 1);
        if let Some(u) = other.update.as_mut() {
            u.table_name = "serverlesspresso-metrics-table".into();
        }
        let err = db.transact(&[add("d#TotalSales", 1), other]).unwrap_err();
        assert!(matches!(err, TxError::Other(ref m) if m.contains("ResourceNotFoundException")), "{err:?}");
        assert!(db.counters().is_empty());
    }

    #[test]
    fn add_to_a_value_that_is_not_a_number_cancels_the_transaction() {
        let db = MemoryDynamo::new("t");
        let text = Put::builder()
            .table_name("t")
            .item(PARTITION_KEY, AttributeValue::S(AGGREGATE_PK.into()))
            .item(SORT_KEY, AttributeValue::S("d#Latte".into()))
            .item(COUNTER_ATTRIBUTE, AttributeValue::S("7".into()))
            .build()
            .unwrap();
        db.transact(&[TransactWriteItem::builder().put(text).build()]).unwrap();
        match db.transact(&[add("d#TotalSales", 1), add("d#Latte", 1)]) {
            Err(TxError::Cancelled { reasons, .. }) => assert_eq!(reasons, ["None", "ValidationError"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sizes_by_dynamodbs_rules() {
        let item = |pairs: &[(&str, AttributeValue)]| -> Item {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
        };
        let n = |s: &str| AttributeValue::N(s.into());
        // Name bytes + value: "é" is two bytes; digits two to a byte plus one.
        assert_eq!(item_size(&item(&[("\u{e9}", AttributeValue::S("ab".into()))])), 4);
        assert_eq!(item_size(&item(&[("n", n("7"))])), 1 + 2);
        assert_eq!(item_size(&item(&[("n", n("123"))])), 1 + 3);
        assert_eq!(item_size(&item(&[("n", n("-0.001200"))])), 1 + 2, "only 1 and 2 are significant");
        assert_eq!(item_size(&item(&[("n", n("1000000"))])), 1 + 2);
        assert_eq!(item_size(&item(&[("n", n("0"))])), 1 + 2);
        assert_eq!(item_size(&item(&[("b", AttributeValue::Bool(true))])), 2);
    }

    #[test]
    fn conditions_cancel_all_and_name_the_item() {
        let db = MemoryDynamo::new("t");
        db.transact(&[put("Dedupe#a", "Dedupe", true), add("d#TotalSales", 1)]).unwrap();
        let err =
            db.transact(&[put("Dedupe#b", "Dedupe", true), put("Dedupe#a", "Dedupe", true), add("d#TotalSales", 2)]);
        match err {
            Err(TxError::Cancelled { reasons, .. }) => assert_eq!(reasons, ["None", "ConditionalCheckFailed", "None"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(db.counters()["d#TotalSales"], 1, "all or nothing");
        assert_eq!(db.other_partition_keys(), ["Dedupe#a"]);
        assert_eq!(db.calls(), (2, 1));
    }

    #[test]
    fn faults_come_first() {
        let db = MemoryDynamo::new("t");
        db.inject([TxError::Throttled("slow down".into())]);
        assert_eq!(db.transact(&[add("d#x", 1)]), Err(TxError::Throttled("slow down".into())));
        db.transact(&[add("d#x", 1)]).unwrap();
        assert_eq!(db.counters()["d#x"], 1);
    }
}
