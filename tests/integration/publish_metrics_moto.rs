//! PublishMetrics' logic with the real DynamoDB client, against a moto server and a table
//! created like the stack's.

use test_support as support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use publish_metrics::fake::events::{batch, state, waiting};
use publish_metrics::model::{check, redeliver_all, run as run_model, scenario, Faulty};
use publish_metrics::{
    process, Chunk, Dynamo, DynamoStore, Invocation, Outcome, Pacer, RetryPolicy, Spacing, Store, TxError, WriteError,
};
use support::aws::{counters, create_metrics_table};
use support::moto::Moto;

const TABLE: &str = "serverlesspresso-metrics-table";

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn fast() -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) }
}

struct Env {
    _moto: Moto,
    client: aws_sdk_dynamodb::Client,
    store: DynamoStore,
}

async fn env() -> Env {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_metrics_table(&client, TABLE).await;
    let store = DynamoStore::new(client.clone(), TABLE);
    Env { _moto: moto, client, store }
}

async fn run<S: Store>(store: &S, bodies: &[String]) -> Outcome {
    let pacer = Pacer::unpaced();
    let spacing = Spacing { retry: fast(), pacer: &pacer };
    process(store, batch(bodies), spacing, Invocation::with_time_left(Duration::from_secs(30)).judged_at(clock())).await
}

const DAY: &str = "2024-05-01T10:00:00Z";

/// The handler's clock in these tests: a day after the events.
fn clock() -> chrono::DateTime<chrono::Utc> {
    "2024-05-03T00:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn batch_of_ten_duplicates_and_redelivery() {
    let e = env().await;
    let drinks =
        ["Latte", "Cappuccino", "Espresso", "Latte", "Latte", "Espresso", "Cappuccino", "Latte", "Espresso", "Latte"];
    let ten: Vec<String> = drinks.iter().enumerate().map(|(i, d)| waiting(&format!("e{i}"), d, DAY)).collect();
    let out = run(&e.store, &ten).await;
    assert_eq!((out.counted, out.duplicates), (10, 0));
    assert_eq!(out.transactions, vec![14]);
    let after_first = expected(&[
        ("2024-05-01#TotalSales", 10),
        ("2024-05-01#Latte", 5),
        ("2024-05-01#Cappuccino", 2),
        ("2024-05-01#Espresso", 3),
    ]);
    assert_eq!(counters(&e.client, TABLE).await, after_first);

    // Duplicates inside one batch.
    let with_dups = vec![
        waiting("n1", "Latte", DAY),
        waiting("n1", "Latte", DAY),
        waiting("n2", "Espresso", DAY),
        waiting("n1", "Latte", DAY),
    ];
    let out = run(&e.store, &with_dups).await;
    assert_eq!((out.counted, out.duplicates), (2, 2));
    assert!(out.response().batch_item_failures.is_empty());

    // The whole first batch again (a crash after the write, before the SQS delete), plus one new.
    let mut again = ten.clone();
    again.push(waiting("n3", "Cappuccino", DAY));
    let out = run(&e.store, &again).await;
    assert_eq!((out.counted, out.duplicates), (1, 10), "{out:?}");
    assert!(out.response().batch_item_failures.is_empty());
    assert_eq!(
        counters(&e.client, TABLE).await,
        expected(&[
            ("2024-05-01#TotalSales", 13),
            ("2024-05-01#Latte", 6),
            ("2024-05-01#Cappuccino", 3),
            ("2024-05-01#Espresso", 4),
        ])
    );
}

#[tokio::test]
async fn a_malformed_record_fails_alone() {
    let e = env().await;
    let bodies = vec![
        waiting("a", "Latte", DAY),
        "{not json".to_owned(),
        waiting("b", "Latte", DAY),
        state("c", "OrderManager.SomethingElse", DAY),
        serde_json::json!({"id": "d", "source": "awsserverlessda.serverlesspresso", "detail-type": "OrderManager.WaitingCompletion", "time": DAY, "detail": {}}).to_string(),
    ];
    let out = run(&e.store, &bodies).await;
    assert_eq!(out.counted, 2);
    let failed: Vec<String> = out.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(failed, ["m1", "m3", "m4"]);
    assert_eq!(counters(&e.client, TABLE).await, expected(&[("2024-05-01#TotalSales", 2), ("2024-05-01#Latte", 2)]));
}

#[tokio::test]
async fn two_days_completed_and_cancelled() {
    let e = env().await;
    let bodies = vec![
        waiting("a", "Flat White", "2024-05-01T23:59:59Z"),
        waiting("b", "Flat White", "2024-05-02T00:00:01Z"),
        state("c", "OrderManager.OrderCompleted", "2024-05-01T23:00:00Z"),
        state("d", "OrderManager.OrderCompleted", "2024-05-02T08:00:00Z"),
        state("e", "OrderManager.OrderCancelled", "2024-05-02T09:00:00Z"),
    ];
    let out = run(&e.store, &bodies).await;
    assert_eq!(out.counted, 5);
    assert_eq!(
        counters(&e.client, TABLE).await,
        expected(&[
            ("2024-05-01#Completed", 1),
            ("2024-05-01#Flat White", 1),
            ("2024-05-01#TotalSales", 1),
            ("2024-05-02#Cancelled", 1),
            ("2024-05-02#Completed", 1),
            ("2024-05-02#Flat White", 1),
            ("2024-05-02#TotalSales", 1),
        ])
    );
}

/// The real store, but the listed writes (0-based) fail with `error`.
struct Flaky {
    inner: DynamoStore,
    calls: AtomicUsize,
    fail_calls: Vec<usize>,
    error: WriteError,
}

impl Store for Flaky {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_calls.contains(&n) {
            return Err(self.error.clone());
        }
        self.inner.write(chunk).await
    }

    fn cost(&self, chunk: &Chunk) -> u64 {
        self.inner.cost(chunk)
    }
}

#[tokio::test]
async fn a_failing_write_returns_exactly_the_affected_records() {
    let e = env().await;
    // 120 events, each its own drink: a dedupe record and a drink counter each, plus the shared
    // TotalSales, so 49 events (99 items) per transaction -> transactions of 49, 49 and 22.
    let bodies: Vec<String> = (0..120).map(|i| waiting(&format!("e{i}"), &format!("Drink {i:03}"), DAY)).collect();
    // The second transaction fails for good (a permission lost, say); the others succeed.
    let denied = WriteError::Permanent("AccessDeniedException (injected)".into());
    let flaky = Flaky { inner: e.store.clone(), calls: AtomicUsize::new(0), fail_calls: vec![1], error: denied };
    let out = run(&flaky, &bodies).await;
    assert_eq!(out.transactions, [99, 45]);
    assert_eq!(out.failed.len(), 49);
    assert!(out.failed[0].reason.contains("after 1 attempt(s): permanent: AccessDenied"), "{}", out.failed[0].reason);
    let failed: Vec<String> = out.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    let want: Vec<String> = (49..98).map(|i| format!("m{i}")).collect();
    assert_eq!(failed, want);
    assert_eq!(counters(&e.client, TABLE).await["2024-05-01#TotalSales"], 71);

    // SQS redelivers the failed ones with the rest, and the first write is throttled once: only
    // the 49 are new.
    let throttled = WriteError::Throttled("ProvisionedThroughputExceeded (injected)".into());
    let flaky_once =
        Flaky { inner: e.store.clone(), calls: AtomicUsize::new(0), fail_calls: vec![0], error: throttled };
    let out = run(&flaky_once, &bodies).await;
    assert_eq!((out.counted, out.duplicates, out.failed.len(), out.throttled), (49, 71, 0, 1));
    let c = counters(&e.client, TABLE).await;
    assert_eq!(c["2024-05-01#TotalSales"], 120);
    assert!((0..120).all(|i| c[&format!("2024-05-01#Drink {i:03}")] == 1));
}

#[tokio::test]
async fn the_model_property_holds_on_the_real_client() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let e = env().await;
    // One fixed scenario of a few hundred messages (the unit tests run many on the fake).
    let mut runner = TestRunner::new(Config { rng_seed: RngSeed::Fixed(20261127), ..Config::default() });
    let mut s = loop {
        let s = scenario(250).new_tree(&mut runner).unwrap().current();
        if s.messages.len() >= 300 {
            break s;
        }
    };
    // Unpaced: in real time a paced scenario waits minutes for its budget (pacing is checked
    // on the fake, in paused time).
    s.budget_milli = None;
    let store = Faulty::new(e.store.clone());
    let fast = RetryPolicy { base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(50) };
    let result = run_model(&s, &store, fast).await;
    let table: BTreeMap<String, i128> =
        counters(&e.client, TABLE).await.into_iter().map(|(k, v)| (k, i128::from(v))).collect();
    check(&s, &result, &table).unwrap();
    let again = redeliver_all(&s, &store).await;
    assert_eq!((again.counted, again.failed.len(), again.bad.len()), (0, 0, 0));
    let after: BTreeMap<String, i128> =
        counters(&e.client, TABLE).await.into_iter().map(|(k, v)| (k, i128::from(v))).collect();
    assert_eq!(after, table);
    println!("{} messages, {} invocations, {} counted", s.messages.len(), result.invocations, result.counted);
}

/// DynamoDB's refusals, as the real client reads them from the endpoint.
#[tokio::test]
async fn refusals_are_read_as_the_handler_expects() {
    let e = env().await;
    let add = |sk: &str| {
        let u = Update::builder()
            .table_name(TABLE)
            .key("PK", AttributeValue::S("Aggregate".into()))
            .key("SK", AttributeValue::S(sk.into()))
            .update_expression("ADD #val :n")
            .expression_attribute_names("#val", "val")
            .expression_attribute_values(":n", AttributeValue::N("1".into()))
            .build()
            .unwrap();
        TransactWriteItem::builder().update(u).build()
    };
    let put = |pk: &str| {
        let p = Put::builder()
            .table_name(TABLE)
            .item("PK", AttributeValue::S(pk.into()))
            .item("SK", AttributeValue::S("Dedupe".into()))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .unwrap();
        TransactWriteItem::builder().put(p).build()
    };
    // Two operations on one item: the whole request is refused.
    let err =
        Dynamo::transact_write_items(&e.client, vec![add("d#TotalSales"), add("d#TotalSales")]).await.unwrap_err();
    assert!(matches!(err, TxError::Validation(ref m) if m.contains("multiple operations")), "{err:?}");
    // A condition failure names its item.
    Dynamo::transact_write_items(&e.client, vec![put("Dedupe#x")]).await.unwrap();
    let err = Dynamo::transact_write_items(&e.client, vec![put("Dedupe#y"), put("Dedupe#x")]).await.unwrap_err();
    match err {
        TxError::Cancelled { reasons, .. } => assert_eq!(reasons, ["None", "ConditionalCheckFailed"]),
        other => panic!("{other:?}"),
    }
    // No such table: not retried, not split.
    let missing = DynamoStore::new(e.client.clone(), "no-such-table");
    let event = order_events::OrderEvent::from_body(&waiting("z", "Latte", DAY), clock()).unwrap();
    let chunk = Chunk::new(vec![publish_metrics::Pending::new(
        event,
        "m",
        &Invocation::with_time_left(Duration::from_secs(30)),
    )]);
    assert!(matches!(missing.write(&chunk).await, Err(WriteError::Permanent(_))));
}

/// A write that committed but answered with a timeout, retried by the same invocation, is that
/// invocation's count: DynamoDB returns the existing dedupe record (`ALL_OLD`), whose
/// `countedBy` names the invocation. Another invocation finds the order counted before.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_that_had_committed_is_told_apart_from_a_redelivery() {
    let e = env().await;
    let first = Invocation::with_time_left(Duration::from_secs(30)).judged_at(clock());
    let event = order_events::OrderEvent::from_body(&waiting("o", "Latte", DAY), clock()).unwrap();
    let chunk = Chunk::new(vec![publish_metrics::Pending::new(event.clone(), "m", &first)]);
    e.store.write(&chunk).await.unwrap();
    let key = event.dedupe.clone();
    assert_eq!(
        e.store.write(&chunk).await.unwrap_err(),
        WriteError::AlreadyCounted { before: vec![], ours: vec![key.clone()] }
    );
    let second = Invocation::with_time_left(Duration::from_secs(30)).judged_at(clock());
    let again = Chunk::new(vec![publish_metrics::Pending::new(event, "m", &second)]);
    assert_eq!(
        e.store.write(&again).await.unwrap_err(),
        WriteError::AlreadyCounted { before: vec![key], ours: vec![] }
    );
    assert_eq!(counters(&e.client, TABLE).await, expected(&[("2024-05-01#TotalSales", 1), ("2024-05-01#Latte", 1)]));
}
