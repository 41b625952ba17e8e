//! Unit tests: the plan from the input, and sending with failed entries.

use std::sync::Mutex;

use super::*;

const RUN: &str = "run-1";

fn ample() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

#[test]
fn defaults_are_the_workshops() {
    let orders = plan(&Input::default(), RUN).unwrap();
    assert_eq!(orders.len(), 500);
    assert!(orders.iter().all(|o| o.detail_type == DetailType::WaitingCompletion));
    let drinks: std::collections::BTreeSet<&str> = orders.iter().map(|o| o.drink.as_str()).collect();
    assert_eq!(drinks.into_iter().collect::<Vec<_>>(), ["Cappuccino", "Espresso", "Latte"]);
    let detail: serde_json::Value = serde_json::from_str(&orders[0].detail).unwrap();
    assert_eq!(detail["orderId"], "run-1-1000");
    // Every order its own ID within a run, and another run's IDs are others.
    let ids = |run: &str| -> std::collections::BTreeSet<String> {
        plan(&Input::default(), run)
            .unwrap()
            .iter()
            .map(|o| {
                serde_json::from_str::<serde_json::Value>(&o.detail).unwrap()["orderId"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(ids(RUN).len(), 500);
    assert!(ids(RUN).is_disjoint(&ids("run-2")));
    assert_eq!(detail["drinkOrder"]["drink"], orders[0].drink.as_str());
}

#[test]
fn the_same_seed_gives_the_same_orders() {
    let a = plan(&Input { seed: Some(7), ..Default::default() }, RUN).unwrap();
    let b = plan(&Input { seed: Some(7), ..Default::default() }, RUN).unwrap();
    let c = plan(&Input { seed: Some(8), ..Default::default() }, RUN).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn input_is_parsed_and_checked() {
    let input: Input = serde_json::from_str(
        r#"{"count": 20, "drinks": ["Flat White"], "seed": 1, "detailType": "OrderManager.OrderCancelled"}"#,
    )
    .unwrap();
    let orders = plan(&input, RUN).unwrap();
    assert_eq!(orders.len(), 20);
    assert!(orders.iter().all(|o| o.drink == "Flat White" && o.detail_type == DetailType::OrderCancelled));
    assert!(serde_json::from_str::<Input>(r#"{"cnt": 1}"#).is_err(), "unknown fields are refused");
    assert_eq!(plan(&Input { count: Some(0), ..Default::default() }, RUN), Err(InputError::Count(0)));
    assert!(plan(&Input { count: Some(1), ..Default::default() }, RUN).is_ok());
    assert!(plan(&Input { count: Some(10_000), ..Default::default() }, RUN).is_ok());
    assert_eq!(plan(&Input { count: Some(10_001), ..Default::default() }, RUN), Err(InputError::Count(10_001)));
    assert_eq!(plan(&Input { drinks: Some(vec![]), ..Default::default() }, RUN), Err(InputError::NoDrinks));
    for (bad, want) in
        [("a#b", "`#`"), ("", "empty"), ("TotalSales", "reserved"), ("cancelled", "reserved"), ("x\u{7}", "control")]
    {
        let err =
            plan(&Input { drinks: Some(vec!["Latte".into(), bad.into()]), ..Default::default() }, RUN).unwrap_err();
        assert!(matches!(err, InputError::Drink(_)) && err.to_string().contains(want), "{bad:?}: {err}");
    }
    // Names are sent as the handler counts them: trimmed, NFC.
    let orders = plan(&Input { drinks: Some(vec![" Cafe\u{301} ".into()]), ..Default::default() }, RUN).unwrap();
    assert_eq!(orders[0].drink, "Caf\u{e9}");
    let with_run =
        |run: &str| plan(&Input { run_id: Some(run.into()), count: Some(1), ..Default::default() }, "ignored");
    assert!(with_run(&"r".repeat(64)).is_ok());
    assert!(matches!(with_run(&"r".repeat(65)), Err(InputError::RunId(_))));
    assert!(matches!(with_run(""), Err(InputError::RunId(_))));
    assert!(matches!(with_run("a#b"), Err(InputError::RunId(_))));
    let detail: serde_json::Value = serde_json::from_str(&with_run("mine").unwrap()[0].detail).unwrap();
    assert_eq!(detail["orderId"], "mine-1000", "the input's runId wins over the request ID");
    // The workshop's own order IDs: the same whatever the run.
    let workshop = |run: &str| {
        let input = Input { workshop_order_ids: Some(true), count: Some(2), ..Default::default() };
        plan(&input, run)
            .unwrap()
            .iter()
            .map(|o| serde_json::from_str::<serde_json::Value>(&o.detail).unwrap()["orderId"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(workshop("a"), ["1000", "1001"]);
    assert_eq!(workshop("a"), workshop("b"));
    let input: Input = serde_json::from_str(r#"{"workshopOrderIds": true}"#).unwrap();
    assert_eq!(input.workshop_order_ids, Some(true));
}

/// Fails the entries at the given call and positions once, or whole calls.
#[derive(Default)]
struct FlakyBus {
    calls: Mutex<Vec<usize>>,
    fail_entries: Vec<(usize, usize)>,
    fail_calls: Vec<usize>,
    always_fail: bool,
    /// Whole-call errors are not retryable (access denied).
    refuse: bool,
    /// Entry error code for `fail_entries`.
    code: Option<&'static str>,
    /// Every call times out: no answer, the entries may have been put.
    timeouts: bool,
}

impl Bus for FlakyBus {
    async fn put(&self, orders: &[Order]) -> Result<EntryResults, PutError> {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.len();
        calls.push(orders.len());
        assert!(orders.len() <= ENTRIES_PER_CALL);
        if self.refuse {
            return Err(PutError { message: "AccessDeniedException".into(), retryable: false, outcome_unknown: false });
        }
        if self.timeouts {
            return Err(PutError { message: "timed out".into(), retryable: true, outcome_unknown: true });
        }
        if self.always_fail || self.fail_calls.contains(&n) {
            return Err(PutError { message: "ThrottlingException".into(), retryable: true, outcome_unknown: false });
        }
        let code = self.code.unwrap_or("InternalFailure");
        Ok((0..orders.len()).map(|i| self.fail_entries.contains(&(n, i)).then(|| code.to_owned())).collect())
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1) }
}

#[tokio::test]
async fn sends_in_calls_of_ten_and_counts_per_drink() {
    let bus = FlakyBus::default();
    let orders = plan(&Input { count: Some(95), ..Default::default() }, RUN).unwrap();
    let mut want: BTreeMap<String, u32> = BTreeMap::new();
    for o in &orders {
        *want.entry(o.drink.clone()).or_default() += 1;
    }
    let report = send(&bus, orders, fast(), ample()).await;
    assert_eq!(report.sent, 95);
    assert_eq!(report.failed, 0);
    assert_eq!(report.per_drink, want);
    assert_eq!(*bus.calls.lock().unwrap(), [vec![10; 9], vec![5]].concat());
}

#[tokio::test]
async fn failed_entries_are_retried_alone() {
    let bus = FlakyBus { fail_entries: vec![(0, 3), (0, 7), (1, 0)], fail_calls: vec![4], ..Default::default() };
    let report =
        send(&bus, plan(&Input { count: Some(30), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed), (30, 0));
    // Call 0: 10 (2 fail), call 1: the 2 again (1 fails), call 2: that 1; then calls 3, 4 (fails whole), 5.
    assert_eq!(*bus.calls.lock().unwrap(), [10, 2, 1, 10, 10, 10]);
    assert_eq!(report.retries, 2 + 1 + 10);
}

#[tokio::test]
async fn entries_that_keep_failing_are_reported() {
    let bus = FlakyBus { always_fail: true, ..Default::default() };
    let report =
        send(&bus, plan(&Input { count: Some(12), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed), (0, 12));
    assert_eq!(report.last_error.as_deref(), Some("ThrottlingException"));
    assert_eq!(report.put_events_calls, 6);
}

#[tokio::test]
async fn entries_refused_for_good_are_not_retried() {
    let bus = FlakyBus { fail_entries: vec![(0, 1), (0, 2)], code: Some("MalformedDetail"), ..Default::default() };
    let report =
        send(&bus, plan(&Input { count: Some(20), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed, report.retries), (18, 2, 0));
    assert_eq!(*bus.calls.lock().unwrap(), [10, 10]);
    assert_eq!(report.last_error.as_deref(), Some("MalformedDetail"));
}

#[tokio::test]
async fn a_call_no_retry_fixes_stops_the_run_at_once() {
    let bus = FlakyBus { refuse: true, ..Default::default() };
    let report =
        send(&bus, plan(&Input { count: Some(35), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed, report.unsent), (0, 10, 25));
    assert_eq!(report.put_events_calls, 1);
    assert!(report.stopped_early.as_deref().is_some_and(|s| s.contains("AccessDeniedException")), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn the_run_stops_before_the_deadline_and_reports_what_it_sent() {
    // A bus that takes 2 s per call: with 20 s, calls start while 6 s (5 s timeout + 1 s) remain.
    struct Slow(FlakyBus);
    impl Bus for Slow {
        async fn put(&self, orders: &[Order]) -> Result<EntryResults, PutError> {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.0.put(orders).await
        }
    }
    let bus = Slow(FlakyBus::default());
    let deadline = Instant::now() + Duration::from_secs(20);
    let report =
        send(&bus, plan(&Input { count: Some(200), ..Default::default() }, RUN).unwrap(), fast(), deadline).await;
    // Calls at 0, 2, ..., 14 s (14 + 6 = 20): 8 calls.
    assert_eq!((report.sent, report.unsent, report.failed), (80, 120, 0));
    assert_eq!(report.stopped_early.as_deref(), Some("the invocation's time ran out"));
    assert!(Instant::now() <= deadline - ANSWER_MARGIN);
    // No time at all: nothing is tried.
    let bus = FlakyBus::default();
    let report =
        send(&bus, plan(&Input { count: Some(5), ..Default::default() }, RUN).unwrap(), fast(), Instant::now()).await;
    assert_eq!((report.sent, report.unsent, report.put_events_calls), (0, 5, 0));
}

#[test]
fn the_report_is_json_a_test_can_read() {
    let report = Report { sent: 2, per_drink: [("Latte".to_owned(), 2)].into(), ..Default::default() };
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["perDrink"]["Latte"], 2);
    assert_eq!(v["putEventsCalls"], 0);
}

#[test]
fn the_client_neither_retries_nor_outlives_a_call() {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let c = client(&sdk);
    let t = c.config().timeout_config().expect("timeouts set");
    assert_eq!(t.operation_timeout(), Some(CALL_TIMEOUT));
    assert_eq!(c.config().retry_config().expect("retry set").max_attempts(), 1);
}

/// An entry is put when EventBridge's answer says so; entries whose calls went unanswered are
/// uncertain when the run gives up on them, never counted as failed or sent.
#[tokio::test]
async fn unanswered_calls_are_uncertain_not_failed() {
    let bus = FlakyBus { timeouts: true, ..Default::default() };
    let report =
        send(&bus, plan(&Input { count: Some(12), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed, report.uncertain, report.unsent), (0, 0, 12, 0), "{report:?}");
    // An unreadable entry is retried, and uncertain if it stays so.
    let bus = FlakyBus { fail_entries: vec![(0, 1), (1, 0), (2, 0)], code: Some(UNREADABLE), ..Default::default() };
    let report = send(&bus, plan(&Input { count: Some(3), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed, report.uncertain), (2, 0, 1), "{report:?}");
    // Refused entries are failed, known not put.
    let bus = FlakyBus { fail_entries: vec![(0, 0)], code: Some("MalformedDetail"), ..Default::default() };
    let report = send(&bus, plan(&Input { count: Some(3), ..Default::default() }, RUN).unwrap(), fast(), ample()).await;
    assert_eq!((report.sent, report.failed, report.uncertain), (2, 1, 0), "{report:?}");
}

#[test]
fn answers_are_read_entry_by_entry() {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    let put = |id: &str| PutEventsResultEntry::builder().event_id(id).build();
    let refused = |code: &str| PutEventsResultEntry::builder().error_code(code).error_message("m").build();
    let neither = PutEventsResultEntry::builder().build();
    let out = PutEventsOutput::builder()
        .failed_entry_count(2)
        .entries(put("a"))
        .entries(refused("ThrottlingException"))
        .entries(neither.clone())
        .build();
    assert_eq!(entry_results(&out), [None, Some("ThrottlingException".into()), Some(UNREADABLE.into())]);
    // A count that disagrees with the entries: no entry can be trusted as put.
    let out = PutEventsOutput::builder().failed_entry_count(1).entries(put("a")).entries(put("b")).build();
    assert_eq!(entry_results(&out), [Some(UNREADABLE.into()), Some(UNREADABLE.into())]);
}
