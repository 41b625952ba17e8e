//! The whole workshop on moto: `local` sends 500 orders and gets exact counts; and, through
//! the same library, injected faults (events delivered twice, malformed messages, a write that
//! keeps failing for a while) still give exact counts, with only the poison messages in the DLQ.

use test_support as support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deploy::deployer::{Approval, DeployOptions, Deployer, Target};
use deploy::local::{self, ConsumeOptions};
use deploy::Connection;
use publish_metrics::{Chunk, DynamoStore, Store, WriteError};
use support::moto::Moto;

#[test]
fn local_run_of_500_orders_counts_exactly() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let out = Command::new(env!("CARGO_BIN_EXE_local"))
        .args(["--endpoint-url", &moto.endpoint, "--time-scale", "0.05", "--completed", "7", "--cancelled", "3"])
        .arg("--lambda-dir")
        .arg(zips.path())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("counts match what was sent"), "{stdout}");
    assert!(stdout.contains("TotalSales                 500       500"), "{stdout}");
    assert!(stdout.contains("Completed                    7         7"), "{stdout}");
    assert!(stdout.contains("Cancelled                    3         3"), "{stdout}");
    assert!(stdout.contains("| counted "), "progress lines: {stdout}");
}

/// The real store, but every write fails while `failing` is above zero (counting down).
struct FailingForAWhile {
    inner: DynamoStore,
    failing: AtomicUsize,
}

impl Store for FailingForAWhile {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        if self.failing.load(Ordering::SeqCst) > 0 {
            self.failing.fetch_sub(1, Ordering::SeqCst);
            return Err(WriteError::Transient("ProvisionedThroughputExceeded (injected)".into()));
        }
        self.inner.write(chunk).await
    }
}

fn event(id: &str, drink: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id, "source": "awsserverlessda.serverlesspresso",
        "detail-type": "OrderManager.WaitingCompletion", "time": "2024-05-01T10:00:00Z",
        "detail": {"orderId": id, "drinkOrder": {"drink": drink}},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_still_give_exact_counts_and_poison_ends_in_the_dlq() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let connection =
        Connection { endpoint_url: Some(moto.endpoint.clone()), local_credentials: true, ..Default::default() };
    let selection = deploy::StackArgs { stack: deploy::StackChoice::Standalone, stack_name: None };
    let target = Target::new(&selection).unwrap();
    let deployer = Deployer::connect(&connection).await;
    let mut progress = Vec::new();
    deployer.bootstrap("fault-assets", &mut |p| progress.push(p)).await.unwrap();
    let options = DeployOptions {
        asset_bucket: Some("fault-assets".into()),
        yes: true,
        lambda_dir: Some(zips.path().to_owned()),
        ..Default::default()
    };
    let outcome = deployer.deploy(&target, &options, &mut |_| Approval::No, &mut |p| progress.push(p)).await.unwrap();
    assert!(matches!(outcome, deploy::deployer::DeployOutcome::Deployed { .. }), "{outcome}");
    // The library reports its progress as data: the review, then the stack's events (moto
    // records only the stack's own).
    assert!(progress.iter().any(|p| matches!(p, deploy::cloudformation::Progress::Reviewed(_))));
    assert!(progress.iter().any(|p| matches!(p,
        deploy::cloudformation::Progress::StackEvent(e) if e.logical_id == target.name && e.status == "CREATE_COMPLETE")));
    let config = moto.sdk_config().await;
    local::disable_mappings(&aws_sdk_lambda::Client::new(&config), "PublishMetrics").await.unwrap();

    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs.get_queue_url().queue_name("MetricsQueue").send().await.unwrap().queue_url().unwrap().to_owned();
    let dlq = sqs.get_queue_url().queue_name("MetricsQueue-DLQ").send().await.unwrap().queue_url().unwrap().to_owned();
    // 40 events, each delivered twice; 3 malformed messages.
    let drinks = ["Latte", "Cappuccino", "Espresso", "Flat White"];
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..40 {
        let drink = drinks[i % drinks.len()];
        *want.entry(format!("2024-05-01#{drink}")).or_default() += 1;
        for _ in 0..2 {
            sqs.send_message().queue_url(&queue).message_body(event(&format!("ev-{i}"), drink)).send().await.unwrap();
        }
    }
    want.insert("2024-05-01#TotalSales".into(), 40);
    for bad in ["not json", "{\"id\": \"no-envelope\"}", &event("no-drink", "").replace("\"drink\":\"\"", "\"x\":1")] {
        sqs.send_message().queue_url(&queue).message_body(bad).send().await.unwrap();
    }

    let ddb = aws_sdk_dynamodb::Client::new(&config);
    // The first 8 writes fail: with 6 attempts per batch, one batch fails outright and comes
    // back after the (scaled) visibility timeout.
    let store = Arc::new(FailingForAWhile {
        inner: DynamoStore::new(ddb.clone(), "serverlesspresso-metrics-table"),
        failing: AtomicUsize::new(8),
    });
    let settings = local::mapping_settings(target.app.mapping());
    let consume = ConsumeOptions { settings, time_scale: 0.01, timeout: Duration::from_secs(240) };
    let tally = local::consume(&sqs, &queue, &dlq, store, &consume, 83, &mut |s| eprintln!("{s}")).await.unwrap();
    assert_eq!(tally.counted, 40, "{tally:?}");
    assert!(tally.duplicates >= 40, "{tally:?}");
    assert_eq!(local::counters(&ddb, "serverlesspresso-metrics-table").await.unwrap(), want);

    // Only the three malformed messages are in the DLQ; the queue is empty.
    let mut dead = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(&dlq).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            dead.push(m.body().unwrap().to_owned());
            sqs.delete_message().queue_url(&dlq).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
    dead.sort();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead.iter().all(|b| !b.contains("ev-")), "{dead:?}");
    assert_eq!(local::depth(&sqs, &queue).await.unwrap(), local::Depth::default());
}
