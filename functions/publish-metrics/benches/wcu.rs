//! DynamoDB write capacity per counted event, computed from the items each transaction writes
//! (moto's ConsumedCapacity figures are fixed, so they cannot be measured locally).
//!
//! The workload is the workshop's load test: 500 `OrderManager.WaitingCompletion` events over
//! Latte, Cappuccino and Espresso, in SQS batches of 10 (the mapping's batch size).

use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use order_events::OrderEvent;
use publish_metrics::store::transaction_wcu;
use publish_metrics::{chunks, DynamoStore, Invocation, Pending};

/// A Lambda request ID, as EventsLoadTest prefixes its order IDs with one.
const RUN_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

/// The load test's event `i` on `day`, with its detail as EventsLoadTest sends it (so the
/// dedupe record is keyed by `orderId`, at its real length).
fn event_body(i: usize, detail: &str, day: &str) -> String {
    serde_json::json!({
        "id": format!("{i:08x}-6f6b-3c86-4d5c-0f0c2a0f3f1e"), "source": "awsserverlessda.serverlesspresso",
        "detail-type": "OrderManager.WaitingCompletion", "time": format!("{day}T12:00:00Z"),
        "detail": serde_json::from_str::<serde_json::Value>(detail).expect("JSON detail"),
    })
    .to_string()
}

/// WCU per event of the exactly-once path over `events`, in batches of `batch`.
fn exactly_once(store: &DynamoStore, events: &[String], batch: usize) -> (u64, usize) {
    let mut wcu = 0;
    let mut transactions = 0;
    for (b, bodies) in events.chunks(batch).enumerate() {
        let pending: Vec<Pending> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let now = "2024-05-03T00:00:00Z".parse().expect("a time");
                let invocation = Invocation::with_time_left(std::time::Duration::from_secs(30)).judged_at(now);
                Pending::new(OrderEvent::from_body(body, now).expect("valid"), format!("{b}-{i}"), &invocation)
            })
            .collect();
        for chunk in chunks(pending) {
            wcu += transaction_wcu(&store.transaction(&chunk, 1_716_000_000).expect("items"));
            transactions += 1;
        }
    }
    (wcu, transactions)
}

fn main() {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), "serverlesspresso-metrics-table");
    let orders = events_load_test::plan(&Default::default(), RUN_ID).expect("default input");
    let load_test: Vec<String> =
        orders.iter().enumerate().map(|(i, o)| event_body(i, &o.detail, "2024-05-01")).collect();
    let menu: Vec<String> = order_events::MENU.iter().map(|d| (*d).to_owned()).collect();
    let input = events_load_test::Input { drinks: Some(menu), ..Default::default() };
    let six = events_load_test::plan(&input, RUN_ID).expect("menu input");
    let worst: Vec<String> =
        six.iter().enumerate().map(|(i, o)| event_body(i, &o.detail, &format!("2024-05-{:02}", 1 + i % 2))).collect();

    println!("DynamoDB WCU per counted event (500 events, computed from the items written)");
    println!("{:<58} {:>10} {:>8} {:>10}", "path", "WCU total", "writes", "WCU/event");
    // The workshop: per event, one TransactWriteItems of two counter updates (2 items x 2 WCU).
    println!("{:<58} {:>10} {:>8} {:>10.2}", "workshop: 1 transaction of 2 updates per event", 500 * 4, 500, 4.0);
    for (name, events, batch) in [
        ("exactly once, load test (3 drinks, 1 day), batches of 10", &load_test, 10),
        ("exactly once, 6 drinks over 2 days, batches of 10", &worst, 10),
        ("exactly once, load test, batches of 100 (window 30 s)", &load_test, 100),
    ] {
        let (wcu, writes) = exactly_once(&store, events, batch);
        println!("{name:<58} {wcu:>10} {writes:>8} {:>10.2}", wcu as f64 / events.len() as f64);
    }
}
