//! The `report` binary against moto, over a table PublishMetrics' logic filled.

use test_support as support;

use std::process::Command;

use publish_metrics::fake::events::batch;
use publish_metrics::{process, DynamoStore, RetryPolicy};
use support::moto::Moto;

const TABLE: &str = "serverlesspresso-metrics-table";

fn body(id: usize, detail_type: &str, drink: &str, time: &str) -> String {
    serde_json::json!({
        "id": format!("e{id}"), "source": "awsserverlessda.serverlesspresso", "detail-type": detail_type,
        "time": time, "detail": {"orderId": id.to_string(), "drinkOrder": {"drink": drink}},
    })
    .to_string()
}

fn report(moto: &Moto, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--endpoint-url", &moto.endpoint, "--local-credentials"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn report_per_day_as_table_json_and_csv() {
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    support::aws::create_metrics_table(&ddb, TABLE).await;
    let bodies = [
        body(1, "OrderManager.WaitingCompletion", "Latte", "2024-05-01T09:00:00Z"),
        body(2, "OrderManager.WaitingCompletion", "Latte", "2024-05-01T10:00:00Z"),
        body(3, "OrderManager.WaitingCompletion", "Espresso", "2024-05-02T10:00:00Z"),
        body(4, "OrderManager.OrderCompleted", "Latte", "2024-05-01T11:00:00Z"),
        body(5, "OrderManager.OrderCancelled", "Espresso", "2024-05-02T11:00:00Z"),
    ];
    let event = batch(&bodies);
    let invocation = publish_metrics::Invocation::with_time_left(std::time::Duration::from_secs(30))
        .judged_at("2024-05-03T00:00:00Z".parse().unwrap());
    let pacer = publish_metrics::Pacer::unpaced();
    let spacing = publish_metrics::Spacing { retry: RetryPolicy::default(), pacer: &pacer };
    let out = process(&DynamoStore::new(ddb, TABLE), event, spacing, invocation).await;
    assert_eq!(out.counted, 5);

    assert_eq!(
        report(&moto, &[]),
        "day         total  completed  cancelled  Espresso  Latte\n\
         2024-05-01      2          1          0         0      2\n\
         2024-05-02      1          0          1         1      0\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&report(&moto, &["--format", "json", "--from", "2024-05-02"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"day": "2024-05-02", "total": 1, "completed": 0, "cancelled": 1, "drinks": {"Espresso": 1}}])
    );
    assert_eq!(
        report(&moto, &["--format", "csv", "--to", "2024-05-01"]),
        "day,total,completed,cancelled,Latte\n2024-05-01,2,1,0,2\n"
    );
    assert!(report(&moto, &["--from", "2025-01-01"]).contains("no metrics"));
}

/// `--explain DAY` lists the events that made the day's numbers and sets them against the
/// counters: a counter written behind PublishMetrics' back makes it fail, naming the metric.
#[tokio::test(flavor = "multi_thread")]
async fn explain_lists_what_made_a_days_numbers_and_catches_a_forged_counter() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    support::aws::create_metrics_table(&ddb, TABLE).await;
    // The start of the previous hour: every event below falls on one day, in the past.
    use chrono::{DurationRound, TimeDelta};
    let hour = (chrono::Utc::now() - TimeDelta::hours(1)).duration_trunc(TimeDelta::hours(1)).unwrap();
    let day = hour.date_naive().to_string();
    let at = |s: i64| (hour + TimeDelta::seconds(40 - s)).to_rfc3339();
    let bodies = [
        body(1, "OrderManager.WaitingCompletion", "Latte", &at(30)),
        body(2, "OrderManager.WaitingCompletion", "Flat White", &at(20)),
        body(1, "OrderManager.OrderCompleted", "Latte", &at(10)),
        body(1, "OrderManager.WaitingCompletion", "Latte", &at(5)),
    ];
    let event = batch(&bodies);
    let pacer = publish_metrics::Pacer::unpaced();
    let spacing = publish_metrics::Spacing { retry: RetryPolicy::default(), pacer: &pacer };
    let invocation = publish_metrics::Invocation::with_time_left(std::time::Duration::from_secs(30));
    let out = process(&DynamoStore::new(ddb.clone(), TABLE), event, spacing, invocation).await;
    // Order 1 is re-published under the same detail-type: one count.
    assert_eq!((out.counted, out.duplicates), (3, 1));

    let text = report(&moto, &["--explain", &day]);
    assert!(text.contains(&format!("{day}: 3 counted orders on record")), "{text}");
    assert!(text.contains("Flat White") && text.contains("OrderManager.OrderCompleted"), "{text}");
    assert!(text.contains("is the sum of these records"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&report(&moto, &["--explain", &day, "--format", "json"])).unwrap();
    assert_eq!(json["records"].as_array().unwrap().len(), 3);
    assert_eq!(json["counters"]["total"], 2);

    // A counter written behind PublishMetrics' back.
    ddb.update_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(order_events::AGGREGATE_PK.to_owned()))
        .key("SK", AttributeValue::S(format!("{day}#Latte")))
        .update_expression("ADD val :n")
        .expression_attribute_values(":n", AttributeValue::N("5".into()))
        .send()
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--endpoint-url", &moto.endpoint, "--local-credentials", "--explain", &day])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("Latte: the counter says 6, the records 1"), "{stdout}");
}

/// A counter item PublishMetrics would never write (`val` stored as a string) stops the report
/// with the item's name and a failure exit, rather than being counted as 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_counter_stops_the_report_naming_it() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    support::aws::create_metrics_table(&ddb, TABLE).await;
    for (sk, val) in
        [("2024-05-01#TotalSales", AttributeValue::N("2".into())), ("2024-05-01#Latte", AttributeValue::S("2".into()))]
    {
        ddb.put_item()
            .table_name(TABLE)
            .item("PK", AttributeValue::S(order_events::AGGREGATE_PK.to_owned()))
            .item("SK", AttributeValue::S(sk.to_owned()))
            .item("val", val)
            .send()
            .await
            .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--endpoint-url", &moto.endpoint, "--local-credentials"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("the counter item 2024-05-01#Latte has no number val"), "{stderr}");
}

/// `backfill` counts orders older than the dedupe window (which PublishMetrics refuses) once
/// each, lists the bad lines and exits 1 for them; run again, it counts nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_counts_old_orders_once_and_names_bad_lines() {
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    support::aws::create_metrics_table(&ddb, TABLE).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.jsonl");
    let lines = [
        body(1, "OrderManager.WaitingCompletion", "Latte", "2021-02-03T10:00:00Z"),
        body(1, "OrderManager.WaitingCompletion", "Latte", "2021-02-03T10:00:00Z"),
        String::new(),
        body(2, "OrderManager.OrderCompleted", "Latte", "2021-02-03T11:00:00Z"),
        "{not json".to_owned(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let backfill = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_backfill"))
            .args(["--endpoint-url", &moto.endpoint, "--local-credentials", "--wcu-per-second", "50", "--events"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = backfill(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a bad line fails the run: {stdout}");
    assert!(stdout.contains("line-4: bad: not JSON"), "{stdout}");
    assert!(stdout.contains("4 events: 2 counted, 1 already counted, 1 bad, 0 failed"), "{stdout}");
    let counters = report::counters(&ddb, TABLE).await.unwrap();
    assert_eq!(counters["2021-02-03#TotalSales"], 1);
    assert_eq!(counters["2021-02-03#Completed"], 1);
    // The good lines again: nothing counted twice, and a clean exit.
    std::fs::write(&file, [lines[0].clone(), lines[3].clone()].join("\n")).unwrap();
    let out = backfill(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("2 events: 0 counted, 2 already counted"), "{stdout}");
    assert_eq!(report::counters(&ddb, TABLE).await.unwrap(), counters);
    // No write capacity at all, or more than a table may have, is refused before anything is read.
    for bad in ["0", "40001", "1.5", "many"] {
        let out = Command::new(env!("CARGO_BIN_EXE_backfill"))
            .args(["--endpoint-url", &moto.endpoint, "--local-credentials", "--wcu-per-second", bad, "--events"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("--wcu-per-second"), "{bad}: {stderr}");
    }
}
