//! Unit tests of the batch logic over an in-memory store that behaves like the transaction.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

use super::*;

/// Atomic like TransactWriteItems: duplicates cancel the whole chunk and are named; injected
/// errors are returned first, one per call.
#[derive(Default)]
struct MemoryStore {
    seen: Mutex<HashSet<String>>,
    counters: Mutex<BTreeMap<String, u64>>,
    inject: Mutex<Vec<WriteError>>,
    calls: Mutex<usize>,
}

impl MemoryStore {
    fn failing(errors: Vec<WriteError>) -> Self {
        MemoryStore { inject: Mutex::new(errors), ..Default::default() }
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().unwrap().clone()
    }
}

impl Store for MemoryStore {
    async fn write(&self, chunk: &Chunk) -> Result<(), WriteError> {
        *self.calls.lock().unwrap() += 1;
        assert!(chunk.items() <= MAX_TRANSACTION_ITEMS);
        if let Some(e) = self.inject.lock().unwrap().pop() {
            return Err(e);
        }
        let mut seen = self.seen.lock().unwrap();
        let dups: Vec<String> =
            chunk.events.iter().filter(|p| seen.contains(&p.event.id)).map(|p| p.event.id.clone()).collect();
        if !dups.is_empty() {
            return Err(WriteError::AlreadyCounted(dups));
        }
        seen.extend(chunk.events.iter().map(|p| p.event.id.clone()));
        let mut counters = self.counters.lock().unwrap();
        for (k, n) in &chunk.counters {
            *counters.entry(k.sort_key()).or_insert(0) += n;
        }
        Ok(())
    }
}

fn waiting(id: &str, drink: &str, time: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id, "source": "awsserverlessda.serverlesspresso",
        "detail-type": "OrderManager.WaitingCompletion", "time": time, "region": "us-east-1", "resources": [],
        "detail": {"orderId": id, "drinkOrder": {"drink": drink}},
    })
    .to_string()
}

fn state(id: &str, detail_type: &str, time: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id, "source": "awsserverlessda.serverlesspresso",
        "detail-type": detail_type, "time": time, "detail": {"orderId": id},
    })
    .to_string()
}

fn batch(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, b) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        m.body = Some(b.clone());
        event.records.push(m);
    }
    event
}

const T: &str = "2024-05-01T10:00:00Z";

fn fast() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
}

fn ten() -> Vec<String> {
    let drinks = ["Latte", "Cappuccino", "Espresso"];
    (0..10).map(|i| waiting(&format!("e{i}"), drinks[i % 3], T)).collect()
}

#[tokio::test]
async fn a_batch_of_ten_is_one_aggregated_transaction() {
    let store = MemoryStore::default();
    let out = process(&store, batch(&ten()), fast(), None).await;
    assert_eq!(out.counted, 10);
    assert_eq!(out.transactions, vec![10 + 4], "10 dedupe records + TotalSales and 3 drinks");
    assert!(out.response().batch_item_failures.is_empty());
    let want: BTreeMap<String, u64> = [
        ("2024-05-01#TotalSales", 10),
        ("2024-05-01#Latte", 4),
        ("2024-05-01#Cappuccino", 3),
        ("2024-05-01#Espresso", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(store.counters(), want);
}

#[tokio::test]
async fn duplicates_in_a_batch_and_across_batches_count_once() {
    let store = MemoryStore::default();
    let mut bodies = ten();
    bodies.push(bodies[0].clone());
    bodies.push(bodies[3].clone());
    let out = process(&store, batch(&bodies), fast(), None).await;
    assert_eq!((out.counted, out.duplicates), (10, 2));
    assert!(out.response().batch_item_failures.is_empty(), "duplicates are done: delete them");

    // A redelivery of part of the batch with one new event.
    let again = vec![bodies[1].clone(), bodies[2].clone(), waiting("new", "Latte", T)];
    let out = process(&store, batch(&again), fast(), None).await;
    assert_eq!((out.counted, out.duplicates), (1, 2));
    assert_eq!(store.counters()["2024-05-01#TotalSales"], 11);
    assert_eq!(store.counters()["2024-05-01#Latte"], 5);
}

#[tokio::test]
async fn bad_records_fail_alone() {
    let store = MemoryStore::default();
    let mut bodies = ten();
    bodies.insert(2, "not json".into());
    bodies.insert(5, "{\"hello\": 1}".into());
    bodies.insert(7, state("x", "OrderManager.Unknown", T));
    bodies.insert(
        8,
        serde_json::json!({"id": "y", "source": "awsserverlessda.serverlesspresso",
        "detail-type": "OrderManager.WaitingCompletion", "time": T, "detail": {"orderId": "1"}})
        .to_string(),
    );
    let out = process(&store, batch(&bodies), fast(), None).await;
    assert_eq!(out.counted, 10);
    let failed: Vec<&str> = out.bad.iter().map(|f| f.message_id.as_str()).collect();
    assert_eq!(failed, ["m2", "m5", "m7", "m8"]);
    assert!(out.bad[0].reason.contains("not JSON"));
    assert!(out.bad[1].reason.contains("not an EventBridge event"));
    assert!(out.bad[2].reason.contains("unknown detail-type"));
    assert!(out.bad[3].reason.contains("no drink"));
    let ids: Vec<String> = out.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(ids, ["m2", "m5", "m7", "m8"]);
    assert_eq!(store.counters()["2024-05-01#TotalSales"], 10);
}

#[tokio::test]
async fn a_record_without_a_body_is_bad() {
    let store = MemoryStore::default();
    let mut event = batch(&ten());
    event.records[4].body = None;
    let out = process(&store, event, fast(), None).await;
    assert_eq!(out.bad, vec![Failure { message_id: "m4".into(), reason: "the record has no body".into() }]);
    assert_eq!(out.counted, 9);
}

#[tokio::test]
async fn completed_cancelled_and_two_days() {
    let store = MemoryStore::default();
    let bodies = vec![
        waiting("a", "Latte", "2024-05-01T23:59:59Z"),
        waiting("b", "Latte", "2024-05-02T00:00:00Z"),
        state("c", "OrderManager.OrderCompleted", "2024-05-01T12:00:00Z"),
        state("d", "OrderManager.OrderCancelled", "2024-05-02T12:00:00Z"),
        state("e", "OrderManager.OrderCompleted", "2024-05-02T12:00:00Z"),
    ];
    let out = process(&store, batch(&bodies), fast(), None).await;
    assert_eq!(out.counted, 5);
    let want: BTreeMap<String, u64> = [
        ("2024-05-01#TotalSales", 1),
        ("2024-05-01#Latte", 1),
        ("2024-05-01#Completed", 1),
        ("2024-05-02#TotalSales", 1),
        ("2024-05-02#Latte", 1),
        ("2024-05-02#Cancelled", 1),
        ("2024-05-02#Completed", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(store.counters(), want);
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let store = MemoryStore::failing(vec![WriteError::Transient("throttled".into()); 2]);
    let out = process(&store, batch(&ten()), fast(), None).await;
    assert_eq!(out.counted, 10);
    assert_eq!(*store.calls.lock().unwrap(), 3);
}

#[tokio::test]
async fn persistent_throttling_fails_exactly_the_chunk() {
    let store = MemoryStore::failing(vec![WriteError::Transient("throttled".into()); 3]);
    let mut bodies = ten();
    bodies.push("bad".into());
    let out = process(&store, batch(&bodies), fast(), None).await;
    assert_eq!(out.counted, 0);
    assert_eq!(out.failed.len(), 10);
    assert!(out.failed[0].reason.contains("after 3 attempt(s)"), "{}", out.failed[0].reason);
    assert_eq!(out.response().batch_item_failures.len(), 11);
    assert!(store.counters().is_empty());
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let store = MemoryStore::failing(vec![WriteError::Permanent("AccessDenied".into())]);
    let out = process(&store, batch(&ten()), fast(), None).await;
    assert_eq!(out.failed.len(), 10);
    assert_eq!(*store.calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn no_retry_past_the_deadline() {
    let store = MemoryStore::failing(vec![WriteError::Transient("throttled".into())]);
    let out = process(&store, batch(&ten()), fast(), Some(Instant::now())).await;
    assert_eq!(out.failed.len(), 10);
    assert_eq!(*store.calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn large_batches_split_into_transactions_of_at_most_100_items() {
    let store = MemoryStore::default();
    // Every event its own drink: 2 counter keys + 1 dedupe record each.
    let bodies: Vec<String> = (0..250).map(|i| waiting(&format!("e{i}"), &format!("Drink {i}"), T)).collect();
    let out = process(&store, batch(&bodies), fast(), None).await;
    assert_eq!(out.counted, 250);
    assert!(out.transactions.iter().all(|n| *n <= MAX_TRANSACTION_ITEMS), "{:?}", out.transactions);
    assert_eq!(out.transactions.iter().sum::<usize>(), 250 + 250 + out.transactions.len());
    assert_eq!(store.counters()["2024-05-01#TotalSales"], 250);
}

#[test]
fn chunks_respect_the_limit_exactly() {
    let events: Vec<Pending> = (0..100)
        .map(|i| Pending {
            event: OrderEvent::from_body(&waiting(&format!("e{i}"), "Latte", T)).unwrap(),
            message_id: format!("m{i}"),
        })
        .collect();
    // Same two keys for all: 98 events + 2 counters = 100 fit; the rest start a new chunk.
    let c = chunks(events);
    assert_eq!(c.iter().map(Chunk::items).collect::<Vec<_>>(), [100, 4]);
}

#[test]
fn backoff_grows_and_is_capped() {
    let r = RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    let d: Vec<u128> = (0..6).map(|a| r.delay(a).as_millis()).collect();
    assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(r.delay(1000), Duration::from_secs(1));
}
