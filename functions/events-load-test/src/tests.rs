//! Unit tests: the plan from the input, and sending with failed entries.

use std::sync::Mutex;

use super::*;

#[test]
fn defaults_are_the_workshops() {
    let orders = plan(&Input::default()).unwrap();
    assert_eq!(orders.len(), 500);
    assert!(orders.iter().all(|o| o.detail_type == DetailType::WaitingCompletion));
    let drinks: std::collections::BTreeSet<&str> = orders.iter().map(|o| o.drink.as_str()).collect();
    assert_eq!(drinks.into_iter().collect::<Vec<_>>(), ["Cappuccino", "Espresso", "Latte"]);
    let detail: serde_json::Value = serde_json::from_str(&orders[0].detail).unwrap();
    assert_eq!(detail["orderId"], "1000");
    assert_eq!(detail["drinkOrder"]["drink"], orders[0].drink.as_str());
}

#[test]
fn the_same_seed_gives_the_same_orders() {
    let a = plan(&Input { seed: Some(7), ..Default::default() }).unwrap();
    let b = plan(&Input { seed: Some(7), ..Default::default() }).unwrap();
    let c = plan(&Input { seed: Some(8), ..Default::default() }).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn input_is_parsed_and_checked() {
    let input: Input = serde_json::from_str(
        r#"{"count": 20, "drinks": ["Flat White"], "seed": 1, "detailType": "OrderManager.OrderCancelled"}"#,
    )
    .unwrap();
    let orders = plan(&input).unwrap();
    assert_eq!(orders.len(), 20);
    assert!(orders.iter().all(|o| o.drink == "Flat White" && o.detail_type == DetailType::OrderCancelled));
    assert!(serde_json::from_str::<Input>(r#"{"cnt": 1}"#).is_err(), "unknown fields are refused");
    assert_eq!(plan(&Input { count: Some(0), ..Default::default() }), Err(InputError::Count(0)));
    assert!(plan(&Input { count: Some(10_000), ..Default::default() }).is_ok());
    assert_eq!(plan(&Input { count: Some(10_001), ..Default::default() }), Err(InputError::Count(10_001)));
    assert_eq!(plan(&Input { drinks: Some(vec![]), ..Default::default() }), Err(InputError::NoDrinks));
    assert_eq!(
        plan(&Input { drinks: Some(vec!["a#b".into()]), ..Default::default() }),
        Err(InputError::Drink("a#b".into()))
    );
}

/// Fails the entries at the given call and positions once, or whole calls.
#[derive(Default)]
struct FlakyBus {
    calls: Mutex<Vec<usize>>,
    fail_entries: Vec<(usize, usize)>,
    fail_calls: Vec<usize>,
    always_fail: bool,
}

impl Bus for FlakyBus {
    async fn put(&self, orders: &[Order]) -> Result<EntryResults, String> {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.len();
        calls.push(orders.len());
        assert!(orders.len() <= ENTRIES_PER_CALL);
        if self.always_fail || self.fail_calls.contains(&n) {
            return Err("ThrottlingException".into());
        }
        Ok((0..orders.len())
            .map(|i| self.fail_entries.contains(&(n, i)).then(|| "InternalFailure".to_owned()))
            .collect())
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1) }
}

#[tokio::test]
async fn sends_in_calls_of_ten_and_counts_per_drink() {
    let bus = FlakyBus::default();
    let orders = plan(&Input { count: Some(95), ..Default::default() }).unwrap();
    let mut want: BTreeMap<String, u32> = BTreeMap::new();
    for o in &orders {
        *want.entry(o.drink.clone()).or_default() += 1;
    }
    let report = send(&bus, orders, fast()).await;
    assert_eq!(report.sent, 95);
    assert_eq!(report.failed, 0);
    assert_eq!(report.per_drink, want);
    assert_eq!(*bus.calls.lock().unwrap(), [vec![10; 9], vec![5]].concat());
}

#[tokio::test]
async fn failed_entries_are_retried_alone() {
    let bus = FlakyBus { fail_entries: vec![(0, 3), (0, 7), (1, 0)], fail_calls: vec![4], ..Default::default() };
    let report = send(&bus, plan(&Input { count: Some(30), ..Default::default() }).unwrap(), fast()).await;
    assert_eq!((report.sent, report.failed), (30, 0));
    // Call 0: 10 (2 fail), call 1: the 2 again (1 fails), call 2: that 1; then calls 3, 4 (fails whole), 5.
    assert_eq!(*bus.calls.lock().unwrap(), [10, 2, 1, 10, 10, 10]);
    assert_eq!(report.retries, 2 + 1 + 10);
}

#[tokio::test]
async fn entries_that_keep_failing_are_reported() {
    let bus = FlakyBus { always_fail: true, ..Default::default() };
    let report = send(&bus, plan(&Input { count: Some(12), ..Default::default() }).unwrap(), fast()).await;
    assert_eq!((report.sent, report.failed), (0, 12));
    assert_eq!(report.last_error.as_deref(), Some("ThrottlingException"));
    assert_eq!(report.put_events_calls, 6);
}

#[test]
fn the_report_is_json_a_test_can_read() {
    let report = Report { sent: 2, per_drink: [("Latte".to_owned(), 2)].into(), ..Default::default() };
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["perDrink"]["Latte"], 2);
    assert_eq!(v["putEventsCalls"], 0);
}
