//! Parsing real event shapes: the workshop load test's and the real app's.

use order_events::{DedupeKey, DetailType, Drink, OrderEvent, OrderKind};

fn parse(name: &str) -> OrderEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(&path).unwrap();
    // A clock a day after the fixtures' dates (events older than the dedupe window are refused).
    let now = "2022-08-19T00:00:00Z".parse().unwrap();
    OrderEvent::from_body(&body, now).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn workshop_load_test_shape() {
    let e = parse("workshop-load-test.json");
    assert_eq!(e.id, "2e3f8a51-6f6b-3c86-4d5c-0f0c2a0f3f1e");
    assert_eq!(e.day.to_string(), "2022-08-17");
    assert_eq!(e.kind, OrderKind::WaitingCompletion { drink: Drink::parse("Latte").unwrap() });
}

#[test]
fn real_app_shape_with_extra_fields() {
    let e = parse("app-waiting-completion.json");
    assert_eq!(e.day.to_string(), "2022-08-17");
    assert_eq!(e.kind, OrderKind::WaitingCompletion { drink: Drink::parse("Flat White").unwrap() });
    assert_eq!(
        e.dedupe,
        DedupeKey::Order {
            detail_type: DetailType::WaitingCompletion,
            order_id: "4eb9a4b8-77cc-4c5e-9d3c-4d1d1b5f8f3e".into()
        }
    );
    let sks: Vec<String> = e.metric_keys().iter().map(|k| k.sort_key()).collect();
    assert_eq!(sks, ["2022-08-17#TotalSales", "2022-08-17#Flat White"]);
}

#[test]
fn cancelled_order_counts_on_its_own_day() {
    let e = parse("app-order-cancelled.json");
    assert_eq!(e.kind, OrderKind::Cancelled);
    assert_eq!(e.metric_keys()[0].sort_key(), "2022-08-18#Cancelled");
}
