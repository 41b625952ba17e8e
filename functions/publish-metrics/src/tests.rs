//! Unit tests of the batch logic over the strict in-memory DynamoDB ([`crate::fake`]).

use std::collections::BTreeMap;

use order_events::DedupeKey;

use super::*;
use crate::fake::events::{batch, state, waiting};
use crate::fake::MemoryDynamo;

type Fake = DynamoStore<MemoryDynamo>;

fn store() -> Fake {
    DynamoStore::new(MemoryDynamo::new("serverlesspresso-metrics-table"), "serverlesspresso-metrics-table")
}

fn counters(store: &Fake) -> BTreeMap<String, i128> {
    store.client().counters()
}

const T: &str = "2024-05-01T10:00:00Z";

/// The handler's clock in these tests: two days after `T`.
fn clock() -> DateTime<Utc> {
    "2024-05-03T00:00:00Z".parse().unwrap()
}

fn unpaced() -> &'static Pacer {
    static UNPACED: std::sync::LazyLock<Pacer> = std::sync::LazyLock::new(Pacer::unpaced);
    &UNPACED
}

fn fast() -> Spacing<'static> {
    Spacing {
        retry: RetryPolicy { base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) },
        pacer: unpaced(),
    }
}

fn budget(wcu_per_second: u64) -> Pacer {
    Pacer::new(order_events::capacity::WriteBudget::per_second_milli(wcu_per_second * 1000).unwrap())
}

fn ample() -> Invocation {
    Invocation::with_time_left(Duration::from_secs(30)).judged_at(clock())
}

async fn run(store: &Fake, bodies: &[String]) -> Outcome {
    process(store, batch(bodies), fast(), ample()).await
}

fn ten() -> Vec<String> {
    let drinks = ["Latte", "Cappuccino", "Espresso"];
    (0..10).map(|i| waiting(&format!("e{i}"), drinks[i % 3], T)).collect()
}

fn map(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn failed_ids(out: &Outcome) -> Vec<String> {
    out.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
}

#[tokio::test]
async fn a_batch_of_ten_is_one_aggregated_transaction() {
    let store = store();
    let out = run(&store, &ten()).await;
    assert_eq!(out.counted, 10);
    assert_eq!(out.transactions, vec![10 + 4], "10 dedupe records + TotalSales and 3 drinks");
    assert_eq!(out.wcu, 2 * 14, "each item under 1 KB, transactional: 2 WCU each");
    assert!(out.response().batch_item_failures.is_empty());
    assert_eq!(
        counters(&store),
        map(&[
            ("2024-05-01#TotalSales", 10),
            ("2024-05-01#Latte", 4),
            ("2024-05-01#Cappuccino", 3),
            ("2024-05-01#Espresso", 3)
        ])
    );
}

#[tokio::test]
async fn duplicates_in_a_batch_and_across_batches_count_once() {
    let store = store();
    let mut bodies = ten();
    bodies.push(bodies[0].clone());
    bodies.push(bodies[3].clone());
    let out = run(&store, &bodies).await;
    assert_eq!((out.counted, out.duplicates), (10, 2));
    assert!(out.response().batch_item_failures.is_empty(), "duplicates are done: delete them");

    // A redelivery of part of the batch with one new event.
    let again = vec![bodies[1].clone(), bodies[2].clone(), waiting("new", "Latte", T)];
    let out = run(&store, &again).await;
    assert_eq!((out.counted, out.duplicates), (1, 2));
    assert_eq!(counters(&store)["2024-05-01#TotalSales"], 11);
    assert_eq!(counters(&store)["2024-05-01#Latte"], 5);
}

#[tokio::test]
async fn an_order_republished_under_a_new_event_id_counts_once() {
    let store = store();
    let completed = |event_id: &str| {
        serde_json::json!({"id": event_id, "source": "awsserverlessda.serverlesspresso",
            "detail-type": "OrderManager.OrderCompleted", "time": T, "detail": {"orderId": "order-7"}})
        .to_string()
    };
    // A double press on "complete": two events, one order, in one batch and in the next.
    let out = run(&store, &[completed("ev-1"), completed("ev-2")]).await;
    assert_eq!((out.counted, out.duplicates), (1, 1));
    let out = run(&store, &[completed("ev-3")]).await;
    assert_eq!((out.counted, out.duplicates), (0, 1));
    assert_eq!(counters(&store), map(&[("2024-05-01#Completed", 1)]));
    assert_eq!(store.client().other_partition_keys(), ["Dedupe#Order#OrderManager.OrderCompleted#order-7"]);
}

#[tokio::test]
async fn metric_names_as_drinks_are_bad_records_and_the_rest_is_counted() {
    let store = store();
    let mut bodies = ten();
    bodies.insert(3, waiting("x1", "TotalSales", T));
    bodies.insert(6, waiting("x2", "completed", T));
    bodies.insert(8, waiting("x3", " CANCELLED ", T));
    let out = run(&store, &bodies).await;
    assert_eq!(out.counted, 10);
    assert_eq!(failed_ids(&out), ["m3", "m6", "m8"]);
    assert!(out.bad.iter().all(|f| f.reason.contains("reserved")), "{:?}", out.bad);
    assert_eq!(counters(&store)["2024-05-01#TotalSales"], 10);
    assert!(!counters(&store).contains_key("2024-05-01#Completed"));
}

#[tokio::test]
async fn bad_records_fail_alone() {
    let store = store();
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
    let out = run(&store, &bodies).await;
    assert_eq!(out.counted, 10);
    let failed: Vec<&str> = out.bad.iter().map(|f| f.message_id.as_str()).collect();
    assert_eq!(failed, ["m2", "m5", "m7", "m8"]);
    assert!(out.bad[0].reason.contains("not JSON"));
    assert!(out.bad[1].reason.contains("not an EventBridge event"));
    assert!(out.bad[2].reason.contains("unknown detail-type"));
    assert!(out.bad[3].reason.contains("no drink"));
    assert_eq!(failed_ids(&out), ["m2", "m5", "m7", "m8"]);
    assert_eq!(counters(&store)["2024-05-01#TotalSales"], 10);
}

#[tokio::test]
async fn an_event_from_the_future_is_bad() {
    let store = store();
    let soon = (clock() + chrono::Duration::minutes(59)).to_rfc3339();
    let later = (clock() + chrono::Duration::minutes(61)).to_rfc3339();
    let out = run(&store, &[waiting("a", "Latte", &soon), waiting("b", "Latte", &later)]).await;
    assert_eq!(out.counted, 1);
    assert_eq!(failed_ids(&out), ["m1"]);
    assert!(out.bad[0].reason.contains("ahead of the clock"), "{}", out.bad[0].reason);
}

#[tokio::test]
async fn a_record_without_a_body_is_bad() {
    let store = store();
    let mut event = batch(&ten());
    event.records[4].body = None;
    let out = process(&store, event, fast(), ample()).await;
    assert_eq!(out.bad, vec![Failure { message_id: "m4".into(), reason: "the record has no body".into() }]);
    assert_eq!(out.counted, 9);
}

#[tokio::test]
async fn completed_cancelled_and_two_days() {
    let store = store();
    let bodies = vec![
        waiting("a", "Latte", "2024-05-01T23:59:59Z"),
        waiting("b", "Latte", "2024-05-02T00:00:00Z"),
        state("c", "OrderManager.OrderCompleted", "2024-05-01T12:00:00Z"),
        state("d", "OrderManager.OrderCancelled", "2024-05-02T12:00:00Z"),
        state("e", "OrderManager.OrderCompleted", "2024-05-02T12:00:00Z"),
    ];
    let out = run(&store, &bodies).await;
    assert_eq!(out.counted, 5);
    assert_eq!(
        counters(&store),
        map(&[
            ("2024-05-01#TotalSales", 1),
            ("2024-05-01#Latte", 1),
            ("2024-05-01#Completed", 1),
            ("2024-05-02#TotalSales", 1),
            ("2024-05-02#Latte", 1),
            ("2024-05-02#Cancelled", 1),
            ("2024-05-02#Completed", 1)
        ])
    );
}

#[tokio::test]
async fn drink_spellings_are_one_counter() {
    let store = store();
    let out = run(&store, &[waiting("a", "Caf\u{e9}", T), waiting("b", " Cafe\u{301} ", T)]).await;
    assert_eq!(out.counted, 2);
    assert_eq!(out.transactions, vec![2 + 2]);
    assert_eq!(counters(&store)["2024-05-01#Caf\u{e9}"], 2);
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let store = store();
    store.client().inject(vec![TxError::Throttled("throttled".into()); 2]);
    let out = run(&store, &ten()).await;
    assert_eq!(out.counted, 10);
    assert_eq!(store.client().calls(), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_for_as_long_as_the_deadline_allows_then_fails_exactly_the_chunk() {
    let store = store();
    store.client().inject(vec![TxError::Throttled("throttled".into()); 1000]);
    let mut bodies = ten();
    bodies.push("bad".into());
    let spacing = Spacing { retry: RetryPolicy::default(), pacer: unpaced() };
    let started = tokio::time::Instant::now();
    let out = process(&store, batch(&bodies), spacing, ample()).await;
    assert_eq!(out.counted, 0);
    assert_eq!(out.failed.len(), 10);
    let calls = store.client().calls().0;
    assert_eq!(out.throttled, calls);
    // Backoff capped at 3 s with half of it jittered: 30 s - 3 s of margin hold at least 9
    // more attempts after the first few short ones, and never one started too late.
    assert!(calls > 10, "retried until the deadline, not a fixed number of times: {calls}");
    assert!(started.elapsed() <= Duration::from_secs(30) - ATTEMPT_TIMEOUT - ANSWER_MARGIN, "{:?}", started.elapsed());
    let reason = &out.failed[0].reason;
    assert!(reason.contains(&format!("after {calls} attempt(s) and the invocation's time ran out")), "{reason}");
    assert!(reason.contains("(last: throttled: throttled)"), "{reason}");
    assert_eq!(out.response().batch_item_failures.len(), 11);
    assert!(counters(&store).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_throttled_write_that_then_succeeds_counts_once_and_says_it_was_throttled() {
    let store = store();
    store.client().inject(vec![TxError::Throttled("throttled".into()); 4]);
    let out =
        process(&store, batch(&ten()), Spacing { retry: RetryPolicy::default(), pacer: unpaced() }, ample()).await;
    assert_eq!((out.counted, out.throttled, out.failed.len()), (10, 4, 0));
    assert_eq!(store.client().calls(), (5, 1));
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let store = store();
    store.client().inject([TxError::Other("AccessDeniedException".into())]);
    let out = run(&store, &ten()).await;
    assert_eq!(out.failed.len(), 10);
    assert_eq!(store.client().calls(), (1, 0));
}

#[tokio::test]
async fn a_refused_transaction_is_split_until_the_record_at_fault_stands_alone() {
    let store = store();
    let mut bodies = ten();
    // An order ID at the limit makes a partition key DynamoDB accepts; these two are refused
    // by the (simulated) table for a reason the parser cannot know: injected validation errors
    // on the first call of each half that holds them.
    store.client().inject([
        TxError::Validation("Item size has exceeded the maximum allowed size".into()),
        TxError::Validation("again, in the first half".into()),
    ]);
    bodies.truncate(8);
    let out = run(&store, &bodies).await;
    // Call 1 (8 events) refused; call 2 (first 4) refused; then 2+2 and the last 4 succeed.
    assert_eq!(out.counted, 8, "{out:?}");
    assert!(out.bad.is_empty());
    assert_eq!(counters(&store)["2024-05-01#TotalSales"], 8);
}

#[tokio::test]
async fn a_record_the_table_always_refuses_fails_alone() {
    // A cancellation with a ValidationError reason, as DynamoDB answers for an item over 400 KB:
    // the fake gives it whenever event "e5" is in the transaction.
    struct RefusesE5(Fake);
    impl Store for RefusesE5 {
        async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
            if let Some(i) = chunk.events.iter().position(|p| p.event.id == "e5") {
                let mut reasons = vec!["None".to_owned(); chunk.items()];
                reasons[i] = "ValidationError".into();
                return Err(classify(
                    chunk,
                    TxError::Cancelled { reasons, counted_by: vec![], message: "Item size too large".into() },
                ));
            }
            self.0.write(chunk).await
        }

        fn cost(&self, chunk: &Chunk) -> u64 {
            self.0.cost(chunk)
        }
    }
    let store = RefusesE5(store());
    let out = process(&store, batch(&ten()), fast(), ample()).await;
    assert_eq!(out.counted, 9);
    assert_eq!(failed_ids(&out), ["m5"]);
    assert!(out.bad[0].reason.contains("DynamoDB refuses this record"), "{}", out.bad[0].reason);
    assert_eq!(counters(&store.0)["2024-05-01#TotalSales"], 9);
    // log2(10) rounds of halving: far fewer calls than one per record.
    assert!(store.0.client().calls().0 <= 9, "{:?}", store.0.client().calls());
}

#[tokio::test(start_paused = true)]
async fn a_past_deadline_means_no_time_at_all() {
    let store = store();
    let past = Invocation::from_deadline_ms("r", 1_000).judged_at(clock());
    let out = process(&store, batch(&ten()), fast(), past).await;
    assert_eq!(out.failed.len(), 10);
    assert!(out.failed[0].reason.contains("not attempted"), "{}", out.failed[0].reason);
    assert_eq!(store.client().calls(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn writes_start_only_while_they_can_end_in_time() {
    let needed = ATTEMPT_TIMEOUT + ANSWER_MARGIN;
    // Exactly enough time: the write is made.
    let enough = store();
    let out = process(&enough, batch(&ten()), fast(), Invocation::with_time_left(needed).judged_at(clock())).await;
    assert_eq!(out.counted, 10);
    // A millisecond less: not attempted, and returned as failures.
    let short = store();
    let out = process(
        &short,
        batch(&ten()),
        fast(),
        Invocation::with_time_left(needed - Duration::from_millis(1)).judged_at(clock()),
    )
    .await;
    assert_eq!((out.counted, out.failed.len()), (0, 10));
    assert_eq!(short.client().calls().0, 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_checked_before_each_chunk_and_each_retry() {
    // Each call takes 1.5 s and a write needs 3 s ahead (2 s timeout + 1 s margin): with 5 s
    // left, writes start at 0 s and 1.5 s; at 3 s, 3 + 3 > 5, so the rest are not attempted.
    let store = DynamoStore::new(MemoryDynamo::with_latency("t", Duration::from_millis(1500)), "t");
    // 250 events with their own drinks: 33 per transaction, eight transactions.
    let bodies: Vec<String> = (0..250).map(|i| waiting(&format!("e{i}"), &format!("Drink {i}"), T)).collect();
    let out =
        process(&store, batch(&bodies), fast(), Invocation::with_time_left(Duration::from_secs(5)).judged_at(clock()))
            .await;
    assert_eq!(out.transactions.len(), 2, "{:?}", out.transactions);
    assert_eq!(out.counted + out.failed.len(), 250);
    assert!(out.failed.iter().all(|f| f.reason.contains("time ran out")));
    let counted: i128 = counters(&store)["2024-05-01#TotalSales"];
    assert_eq!(counted, out.counted as i128);

    // A retry whose backoff would end too late is not made.
    let store = DynamoStore::new(MemoryDynamo::new("t"), "t");
    store.client().inject([TxError::Throttled("slow".into())]);
    let slow = Spacing {
        retry: RetryPolicy { base_delay: Duration::from_secs(2), max_delay: Duration::from_secs(2) },
        pacer: unpaced(),
    };
    let out =
        process(&store, batch(&ten()), slow, Invocation::with_time_left(Duration::from_secs(4)).judged_at(clock()))
            .await;
    assert_eq!((out.counted, out.failed.len()), (0, 10));
    assert!(
        out.failed[0].reason.contains("after 1 attempt(s) and the invocation's time ran out (last: throttled: slow)"),
        "{}",
        out.failed[0].reason
    );
    assert_eq!(store.client().calls().0, 1);
}

#[tokio::test]
async fn large_batches_split_into_transactions_of_at_most_100_items() {
    let store = store();
    // Every event its own drink: 2 counter keys + 1 dedupe record each.
    let bodies: Vec<String> = (0..250).map(|i| waiting(&format!("e{i}"), &format!("Drink {i}"), T)).collect();
    let out = run(&store, &bodies).await;
    assert_eq!(out.counted, 250);
    assert!(out.transactions.iter().all(|n| *n <= MAX_TRANSACTION_ITEMS), "{:?}", out.transactions);
    assert_eq!(out.transactions.iter().sum::<usize>(), 250 + 250 + out.transactions.len());
    assert_eq!(counters(&store)["2024-05-01#TotalSales"], 250);
}

#[test]
fn chunks_respect_the_limit_exactly() {
    let events: Vec<Pending> = (0..100)
        .map(|i| {
            Pending::new(
                OrderEvent::from_body(&waiting(&format!("e{i}"), "Latte", T), clock()).unwrap(),
                format!("m{i}"),
                &ample(),
            )
        })
        .collect();
    // Same two keys for all: 98 events + 2 counters = 100 fit; the rest start a new chunk.
    let c = chunks(events);
    assert_eq!(c.iter().map(Chunk::items).collect::<Vec<_>>(), [100, 4]);
}

#[test]
fn classification_of_dynamodb_answers() {
    let invocation = ample();
    let chunk = Chunk::new(vec![Pending::new(
        OrderEvent::from_body(&waiting("e0", "Latte", T), clock()).unwrap(),
        "m0",
        &invocation,
    )]);
    let cancelled = |reasons: &[&str]| TxError::Cancelled {
        reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        counted_by: vec![],
        message: String::new(),
    };
    let e0 = DedupeKey::Order { detail_type: order_events::DetailType::WaitingCompletion, order_id: "e0".into() };
    assert_eq!(
        classify(&chunk, cancelled(&["ConditionalCheckFailed", "None", "None"])),
        WriteError::AlreadyCounted { before: vec![e0.clone()], ours: vec![] }
    );
    // The existing record names this invocation: its own earlier attempt committed.
    let held_by = |who: &str| TxError::Cancelled {
        reasons: vec!["ConditionalCheckFailed".into(), "None".into(), "None".into()],
        counted_by: vec![Some(who.to_owned()), None, None],
        message: String::new(),
    };
    assert_eq!(
        classify(&chunk, held_by(&invocation.id)),
        WriteError::AlreadyCounted { before: vec![], ours: vec![e0.clone()] }
    );
    assert_eq!(
        classify(&chunk, held_by("another-request")),
        WriteError::AlreadyCounted { before: vec![e0], ours: vec![] }
    );
    assert!(matches!(classify(&chunk, cancelled(&["None", "ValidationError", "None"])), WriteError::Rejected(_)));
    assert!(matches!(classify(&chunk, cancelled(&["None", "ThrottlingError", "None"])), WriteError::Throttled(_)));
    assert!(matches!(
        classify(&chunk, cancelled(&["ProvisionedThroughputExceeded", "None", "None"])),
        WriteError::Throttled(_)
    ));
    assert!(matches!(classify(&chunk, cancelled(&["TransactionConflict", "None", "None"])), WriteError::Transient(_)));
    assert!(matches!(
        classify(&chunk, cancelled(&["None", "ItemCollectionSizeLimitExceeded"])),
        WriteError::Permanent(_)
    ));
    assert!(matches!(classify(&chunk, TxError::Validation("x".into())), WriteError::Rejected(_)));
    // A table whose keys are not the stack's refuses every record alike: a failed write.
    for schema in [
        "One or more parameter values were invalid: Missing the key pk in the item",
        "The provided key element does not match the schema",
        "One or more parameter values were invalid: Type mismatch for key PK expected: N actual: S",
    ] {
        let e = classify(&chunk, TxError::Validation(schema.into()));
        assert!(matches!(e, WriteError::Permanent(ref m) if m.contains("key schema")), "{e:?}");
    }
    assert!(matches!(classify(&chunk, TxError::Throttled("x".into())), WriteError::Throttled(_)));
    assert!(matches!(classify(&chunk, TxError::Transient("x".into())), WriteError::Transient(_)));
    assert!(matches!(classify(&chunk, TxError::Other("x".into())), WriteError::Permanent(_)));
}

#[test]
fn backoff_grows_is_capped_and_is_jittered_by_record() {
    let r = RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    let full = [100u128, 200, 400, 800, 1000, 1000];
    for key in ["m0", "m1", "a much longer message id"] {
        for (attempt, full) in full.iter().enumerate() {
            let d = r.delay(attempt as u32, key).as_millis();
            assert!(full / 2 <= d && d <= *full, "{key} attempt {attempt}: {d} ms of {full}");
        }
        assert!(r.delay(1000, key) <= Duration::from_secs(1));
        assert_eq!(r.delay(3, key), r.delay(3, key), "the same record waits the same");
    }
    // Instances throttled at once, on other records, do not retry in step.
    let spread: std::collections::BTreeSet<u128> = (0..20).map(|i| r.delay(4, &format!("m{i}")).as_millis()).collect();
    assert!(spread.len() > 10, "{spread:?}");
}

/// Records when each write started and what it cost, for the window property.
struct Recording<S> {
    inner: S,
    writes: std::sync::Mutex<Vec<(tokio::time::Instant, u64)>>,
}

impl<S: Store + Sync> Store for Recording<S> {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        self.writes.lock().unwrap().push((tokio::time::Instant::now(), self.inner.cost(chunk)));
        self.inner.write(chunk).await
    }

    fn cost(&self, chunk: &Chunk) -> u64 {
        self.inner.cost(chunk)
    }
}

#[tokio::test(start_paused = true)]
async fn a_paced_batch_waits_for_its_budget_before_writing() {
    let store = store();
    let pacer = budget(5);
    let spacing = Spacing { retry: RetryPolicy::default(), pacer: &pacer };
    let started = tokio::time::Instant::now();
    let out = process(&store, batch(&ten()), spacing, ample()).await;
    assert_eq!(out.counted, 10);
    // 28 WCU at 5 WCU/s from an empty bucket.
    assert_eq!(out.paced, Duration::from_millis(5600));
    assert_eq!(started.elapsed(), Duration::from_millis(5600));
    // The next batch pays for itself again.
    let next: Vec<String> = (10..20).map(|i| waiting(&format!("e{i}"), "Latte", T)).collect();
    let out = process(&store, batch(&next), spacing, ample()).await;
    assert_eq!((out.counted, out.paced), (10, Duration::from_millis(2 * 12 * 1000 / 5)));
}

#[tokio::test(start_paused = true)]
async fn a_chunk_its_budget_cannot_write_in_time_is_returned_not_written() {
    let store = store();
    let pacer = budget(1);
    let spacing = Spacing { retry: RetryPolicy::default(), pacer: &pacer };
    // 28 WCU at 1 WCU/s need 28 s; with 30 s left a write must start by 27 s.
    let out = process(&store, batch(&ten()), spacing, ample()).await;
    assert_eq!((out.counted, out.failed.len()), (0, 10));
    assert!(out.failed[0].reason.contains("its 28 WCU at the write budget of 1 WCU/s"), "{}", out.failed[0].reason);
    assert_eq!(store.client().calls().0, 0, "nothing written, nothing spent");
    assert_eq!(pacer.wait(28), Duration::from_secs(28), "the budget was not charged");
    // With more time, the same batch is written after its wait.
    let out =
        process(&store, batch(&ten()), spacing, Invocation::with_time_left(Duration::from_secs(31)).judged_at(clock()))
            .await;
    assert_eq!((out.counted, out.paced), (10, Duration::from_secs(28)));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 48, failure_persistence: None, ..Default::default() })]

    /// Whatever arrives, a paced instance writes at most its budget over any 60 s window,
    /// plus the one transaction that window starts with.
    #[test]
    fn paced_writes_stay_under_the_budget_in_every_window(
        budget_milli in 500u64..20_000,
        batches in proptest::collection::vec((1usize..=10, 1usize..=10, proptest::prop_oneof![0u64..3_000, 0u64..120_000], 0u64..40_000), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let pacer = Pacer::new(order_events::capacity::WriteBudget::per_second_milli(budget_milli).unwrap());
        let store = Recording {
            inner: DynamoStore::new(MemoryDynamo::with_latency("t", Duration::from_millis(50)), "t"),
            writes: std::sync::Mutex::new(Vec::new()),
        };
        let mut n = 0;
        rt.block_on(async {
            for (size, drinks, idle_ms, left_ms) in &batches {
                tokio::time::sleep(Duration::from_millis(*idle_ms)).await;
                let bodies: Vec<String> = (0..*size)
                    .map(|_| {
                        n += 1;
                        waiting(&format!("e{n}"), &format!("Drink {}", n % drinks), T)
                    })
                    .collect();
                let spacing = Spacing { retry: RetryPolicy::default(), pacer: &pacer };
                process(&store, batch(&bodies), spacing, Invocation::with_time_left(Duration::from_millis(*left_ms)).judged_at(clock())).await;
            }
        });
        let writes = store.writes.into_inner().unwrap();
        let largest = writes.iter().map(|(_, c)| *c).max().unwrap_or(0) as f64;
        let allowed = budget_milli as f64 / 1000.0 * 60.0 + largest;
        for (i, (start, _)) in writes.iter().enumerate() {
            let window: u64 = writes[i..].iter().take_while(|(t, _)| t.duration_since(*start) < Duration::from_secs(60)).map(|(_, c)| c).sum();
            proptest::prop_assert!(window as f64 <= allowed + 1e-6, "{window} WCU in the 60 s from write {i}, allowed {allowed}");
        }
    }
}

#[test]
fn the_most_an_order_can_cost_is_what_the_stack_plans_for() {
    use order_events::capacity::MAX_WCU_PER_ORDER;
    // The longest event ID, order ID and drink name the handler accepts (in 4-byte
    // characters), times with fractions, and every provenance attribute.
    let id = "x".repeat(order_events::MAX_ID_BYTES);
    let drink = "\u{1F375}".repeat(order_events::MAX_DRINK_CHARS);
    let body = serde_json::json!({"id": id, "source": order_events::SOURCE,
        "detail-type": "OrderManager.WaitingCompletion", "time": "2024-05-01T10:00:00.123456789+00:00",
        "detail": {"orderId": id, "drinkOrder": {"drink": drink}}})
    .to_string();
    let event = OrderEvent::from_body(&body, clock()).unwrap();
    // A Lambda request ID is a UUID.
    let invocation = Invocation::with_time_left(Duration::from_secs(30)).judged_at(clock());
    let invocation = Invocation { id: "8f5e3f3a-1c2b-4d5e-9f00-0123456789ab".into(), ..invocation };
    let mut pending = Pending::new(event, "m", &invocation);
    pending.sent_at = Some(clock());
    let chunk = Chunk::new(vec![pending]);
    let items = store().transaction(&chunk, u64::MAX / 2).unwrap();
    assert_eq!(store::transaction_wcu(&items), MAX_WCU_PER_ORDER);
    let dedupe = store::item_size(items[0].put().unwrap().item());
    assert!(dedupe <= 1024, "the dedupe record is {dedupe} bytes");
}

/// A redrive after the dedupe record expired, or an archive replay, delivers an event the
/// table no longer remembers: it is refused by its age (a bad record, for a person to look
/// at), never counted a second time.
#[tokio::test]
async fn an_event_older_than_the_window_is_bad_even_when_its_record_expired() {
    let store = store();
    let out = run(&store, &[waiting("a", "Latte", T)]).await;
    assert_eq!(out.counted, 1);
    // The record expired (a fresh table remembers nothing), and the message comes back past the window.
    let later = clock() + chrono::Duration::seconds(i64::from(order_events::window::MAX_EVENT_AGE_SECS));
    let expired = self::store();
    let invocation = ample().judged_at(later);
    let out = process(&expired, batch(&[waiting("a", "Latte", T)]), fast(), invocation).await;
    assert_eq!((out.counted, out.bad.len()), (0, 1), "{out:?}");
    assert!(out.bad[0].reason.contains("older than the dedupe window"), "{}", out.bad[0].reason);
    assert!(counters(&expired).is_empty());
    // Within the window it is still the same order: counted once.
    let within = clock() + chrono::Duration::days(10);
    let out = process(&store, batch(&[waiting("a", "Latte", T)]), fast(), ample().judged_at(within)).await;
    assert_eq!((out.counted, out.duplicates), (0, 1));
}

/// Each dedupe record says which event made the count, when it happened, when it was queued
/// and when it was counted.
#[tokio::test]
async fn the_dedupe_record_keeps_the_events_provenance() {
    use order_events::provenance;
    let store = store();
    let mut event = batch(&[waiting("a", "Latte", T), state("b", "OrderManager.OrderCompleted", T)]);
    event.records[0].attributes.insert("SentTimestamp".into(), "1714557600500".into());
    event.records[1].attributes.insert("SentTimestamp".into(), "not a number".into());
    let out = process(&store, event, fast(), ample()).await;
    assert_eq!(out.counted, 2);
    let records = store.client().dedupe_records();
    let a = &records["Dedupe#Order#OrderManager.WaitingCompletion#a"];
    let s = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        item.get(k).map(|v| v.as_s().unwrap().clone())
    };
    assert_eq!(s(a, provenance::EVENT_ID).as_deref(), Some("a"));
    assert_eq!(s(a, provenance::DETAIL_TYPE).as_deref(), Some("OrderManager.WaitingCompletion"));
    assert_eq!(s(a, provenance::EVENT_TIME).as_deref(), Some("2024-05-01T10:00:00.000Z"));
    assert_eq!(s(a, provenance::SENT_AT).as_deref(), Some("2024-05-01T10:00:00.500Z"));
    assert_eq!(s(a, provenance::COUNTED_AT).as_deref(), Some("2024-05-03T00:00:00.000Z"));
    assert_eq!(s(a, provenance::DRINK).as_deref(), Some("Latte"));
    let b = &records["Dedupe#Order#OrderManager.OrderCompleted#b"];
    assert_eq!(s(b, provenance::SENT_AT), None, "an unreadable SentTimestamp is left out");
    assert_eq!(s(b, provenance::DRINK), None);
}

/// A table whose key schema is not the stack's (made by hand) refuses every record alike, in
/// DynamoDB's words: the records are failed writes (returned, retried, alarmed as failures),
/// not bad records sent to the DLQ one by one.
#[tokio::test]
async fn a_table_with_another_key_schema_fails_the_writes_not_the_records() {
    use crate::fake::KeySchema;
    for schema in [
        KeySchema { partition: "pk".into(), sort: None },
        KeySchema { partition: "PK".into(), sort: None },
        KeySchema { partition: "PK".into(), sort: Some("sk".into()) },
    ] {
        let store = DynamoStore::new(MemoryDynamo::with_key_schema("t", schema.clone()), "t");
        let out = run(&store, &[waiting("a", "Latte", T), state("b", "OrderManager.OrderCompleted", T)]).await;
        assert_eq!((out.counted, out.bad.len(), out.failed.len()), (0, 0, 2), "{schema:?}: {out:?}");
        assert!(out.failed[0].reason.contains("key schema"), "{}", out.failed[0].reason);
    }
}
