//! The whole workshop on moto: `local` runs the handlers' real binaries (EventsLoadTest sends
//! 500 orders, PublishMetrics drains the queue under the template's mapping) and the table holds
//! exact counts; and, through the in-process mode, injected faults (events delivered twice,
//! malformed messages, a write that keeps failing for a while) still give exact counts, with
//! only the poison messages in the DLQ.

use test_support as support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deploy::deployer::{Approval, DeployOptions, Deployer};
use deploy::queue::{depth, Depth};
use local::in_process::{self, ConsumeOptions};
use publish_metrics::{Chunk, DynamoStore, Store, WriteError};
use support::moto::Moto;

/// The `local` binary on `moto`, deploying `zips`, running the host-built handlers; then
/// `args` (a subcommand, or the run's flags) and the logs' directory `logs`.
fn local(moto: &Moto, zips: &std::path::Path, args: &[&str], logs: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local"));
    cmd.args(["--endpoint-url", &moto.endpoint])
        .arg("--lambda-dir")
        .arg(zips)
        .arg("--handlers")
        .arg(support::handler_binary("publish-metrics").parent().unwrap())
        .args(args)
        .arg("--logs")
        .arg(logs)
        .env_remove("AWS_PROFILE");
    cmd
}

#[test]
fn local_run_of_500_orders_with_the_real_binaries_counts_exactly() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let run = ["--time-scale", "0.05", "--completed", "7", "--cancelled", "3"];
    let out = local(
        &moto,
        zips.path(),
        &[&run[..], &["--drinks", "Latte,Flat White,Americano", "--json"]].concat(),
        logs.path(),
    )
    .output()
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The progress goes to stderr; stdout is the summary, one JSON document.
    assert!(stderr.contains("| invocations "), "progress lines with the invocations: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["exact"], true, "{summary:#}");
    assert_eq!(summary["sent"], 510);
    let l = &summary["lambda"];
    assert_eq!((l["errors"].as_u64(), l["timeouts"].as_u64()), (Some(0), Some(0)), "{l}");
    assert_eq!(summary["tally"]["counted"], 510, "PublishMetrics' EMF lines add up to what was sent");
    assert_eq!(summary["table"]["throttledRequests"], 0, "paced: {}", summary["table"]);

    // The counts, read back through the DynamoDB API rather than from the report.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let counters = runtime.block_on(async {
        let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
        report::counters(&ddb, "serverlesspresso-metrics-table").await.unwrap()
    });
    let mut per_metric: BTreeMap<String, u64> = BTreeMap::new();
    for (sk, val) in counters {
        *per_metric.entry(sk.split_once('#').unwrap().1.to_owned()).or_default() += val;
    }
    assert_eq!(per_metric["TotalSales"], 500, "{per_metric:?}");
    assert_eq!((per_metric["Completed"], per_metric["Cancelled"]), (7, 3), "{per_metric:?}");
    // The drink mix given on the command line reached the binary: only those drinks, all 500.
    let drinks: u64 =
        ["Latte", "Flat White", "Americano"].iter().map(|d| per_metric.get(*d).copied().unwrap_or(0)).sum();
    assert_eq!(drinks, 500, "every order counted under one of its drinks: {per_metric:?}");
    assert!(!per_metric.contains_key("Espresso"), "{per_metric:?}");

    // Each function's logs, one JSON document per line, with its request IDs; the EMF lines
    // add up to the orders counted.
    let lines = std::fs::read_to_string(logs.path().join("PublishMetrics.jsonl")).unwrap();
    let docs: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counted: u64 = docs.iter().filter_map(|d| d["message"]["CountedRecords"].as_u64()).sum();
    assert_eq!(counted, 510);
    assert!(docs.iter().all(|d| d["function"] == "PublishMetrics"));
    // LogFormat JSON: Lambda's platform lines are JSON records.
    assert!(docs.iter().any(|d| d["message"]["type"] == "platform.report"), "{lines}");
    assert!(logs.path().join("EventsLoadTest.jsonl").exists());
}

/// The real store, but every write fails for good while `failing` is above zero (counting
/// down): each of those batches is returned whole and SQS delivers it again.
struct FailingForAWhile {
    inner: DynamoStore,
    failing: AtomicUsize,
}

impl Store for FailingForAWhile {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        if self.failing.load(Ordering::SeqCst) > 0 {
            self.failing.fetch_sub(1, Ordering::SeqCst);
            return Err(WriteError::Permanent("AccessDeniedException (injected)".into()));
        }
        self.inner.write(chunk).await
    }

    fn cost(&self, chunk: &Chunk) -> u64 {
        self.inner.cost(chunk)
    }
}

/// When the orders happened: the start of the previous hour (inside the dedupe window, never in
/// the future), and its day.
static ORDER_TIME: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    use chrono::{DurationRound, TimeDelta};
    let hour = (chrono::Utc::now() - TimeDelta::hours(1)).duration_trunc(TimeDelta::hours(1)).unwrap();
    (hour.to_rfc3339(), hour.date_naive().to_string())
});

fn day() -> &'static str {
    &ORDER_TIME.1
}

fn event(id: &str, drink: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id, "source": "awsserverlessda.serverlesspresso",
        "detail-type": "OrderManager.WaitingCompletion", "time": ORDER_TIME.0,
        "detail": {"orderId": id, "drinkOrder": {"drink": drink}},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_still_give_exact_counts_and_poison_ends_in_the_dlq() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let selection = metrics_stack::StackArgs { stack: metrics_stack::StackChoice::Standalone, stack_name: None };
    let (app, target) = deploy_cli::target(&selection).unwrap();
    let deployer = Deployer::new(&moto.sdk_config().await);
    let mut progress = Vec::new();
    deployer.bootstrap("fault-assets", false, &mut |p| progress.push(p)).await.unwrap();
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
        *want.entry(format!("{}#{drink}", day())).or_default() += 1;
        for _ in 0..2 {
            sqs.send_message().queue_url(&queue).message_body(event(&format!("ev-{i}"), drink)).send().await.unwrap();
        }
    }
    want.insert(format!("{}#TotalSales", day()), 40);
    for bad in ["not json", "{\"id\": \"no-envelope\"}", &event("no-drink", "").replace("\"drink\":\"\"", "\"x\":1")] {
        sqs.send_message().queue_url(&queue).message_body(bad).send().await.unwrap();
    }

    let ddb = aws_sdk_dynamodb::Client::new(&config);
    // The first 2 writes fail for good: those batches are returned whole and come back after
    // the (scaled) visibility timeout.
    let store = Arc::new(FailingForAWhile {
        inner: DynamoStore::new(ddb.clone(), "serverlesspresso-metrics-table"),
        failing: AtomicUsize::new(2),
    });
    let settings = local::mapping_settings(app.mapping());
    let budget = app.capacity().budget.scaled(0.01);
    let consume = ConsumeOptions { settings, time_scale: 0.01, timeout: Duration::from_secs(240), budget };
    let tally = in_process::consume(&sqs, &queue, &dlq, store, &consume, 83, &mut |s| eprintln!("{s}")).await.unwrap();
    assert_eq!(tally.counted, 40, "{tally:?}");
    assert!(tally.duplicates >= 40, "{tally:?}");
    assert_eq!(report::counters(&ddb, "serverlesspresso-metrics-table").await.unwrap(), want);

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
    assert_eq!(depth(&sqs, &queue).await.unwrap(), Depth::default());
}

#[test]
fn local_invoke_runs_one_function_once_with_the_event_given() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let handlers = support::handler_binary("publish-metrics").parent().unwrap().to_owned();
    let invoke = |function: &str, event: &str| {
        with_stdin(
            Command::new(env!("CARGO_BIN_EXE_local"))
                .args(["--endpoint-url", &moto.endpoint, "invoke", function, "--event", "-"])
                .arg("--lambda-dir")
                .arg(zips.path())
                .arg("--handlers")
                .arg(&handlers),
            event.as_bytes(),
        )
    };
    let sqs_event = serde_json::json!({"Records": [
        {"messageId": "m1", "body": event("order-1", "Latte"), "eventSource": "aws:sqs"},
        {"messageId": "m2", "body": "not json", "eventSource": "aws:sqs"},
    ]});
    let out = invoke("PublishMetrics", &sqs_event.to_string());
    let (stdout, stderr) = (support::text(&out.stdout), support::text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let response: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(response, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m2"}]}));
    // The function's logs, each line prefixed with its name and request ID.
    assert!(stderr.lines().any(|l| l.starts_with("[PublishMetrics ") && l.contains("\"platform.report\"")), "{stderr}");
    assert!(
        stderr.contains("running the handlers in ") && stderr.contains("(--handlers)"),
        "says which build runs: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("[PublishMetrics ") && l.contains("\"CountedRecords\":1")),
        "{stderr}"
    );
    let counters = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
        report::counters(&ddb, "serverlesspresso-metrics-table").await.unwrap()
    });
    assert_eq!(counters.get(&format!("{}#Latte", day())), Some(&1), "{counters:?}");

    // A load test input it refuses: the function error is printed and the exit status is 1.
    let out = invoke("EventsLoadTest", r#"{"count": 0}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(support::text(&out.stdout).contains("count = 0 is invalid"), "{}", support::text(&out.stdout));

    let out = invoke("Nope", "{}");
    assert_eq!(out.status.code(), Some(1));
    let stderr = support::text(&out.stderr);
    assert!(stderr.contains("no function Nope") && stderr.contains("PublishMetrics"), "{stderr}");
    let out = invoke("PublishMetrics", "not json");
    assert!(support::text(&out.stderr).contains("is not JSON"), "{}", support::text(&out.stderr));
}

#[test]
fn local_invoke_refuses_the_run_flags_instead_of_ignoring_them() {
    // Before the subcommand clap accepts the run's flags; `invoke` would not use them.
    let out = with_stdin(
        Command::new(env!("CARGO_BIN_EXE_local")).args([
            "--count",
            "5",
            "--time-scale",
            "0.1",
            "invoke",
            "PublishMetrics",
            "--event",
            "-",
        ]),
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--count, --time-scale cannot be used with `invoke`"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing started: {}", String::from_utf8_lossy(&out.stdout));
    // The `=` form, a flag without a value and one after the subcommand are refused too.
    for (args, says) in [
        (&["--seed=7", "--print-logs", "invoke", "PublishMetrics", "--event", "-"][..], "--seed, --print-logs cannot"),
        (&["invoke", "PublishMetrics", "--event", "-", "--count", "5"][..], "unexpected argument '--count'"),
        // `serve` has its own --logs; the run's, before it, is refused.
        (&["--logs", "/tmp/x", "serve", "--port", "0"][..], "--logs cannot be used with `serve`"),
    ] {
        let out = with_stdin(Command::new(env!("CARGO_BIN_EXE_local")).args(args), b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // The shared flags stay accepted before `invoke`, and a run flag's default is not taken
    // for one given: this reaches the event's check (no endpoint is contacted before it).
    let out = with_stdin(
        Command::new(env!("CARGO_BIN_EXE_local"))
            .args(["--endpoint-url", "http://127.0.0.1:9", "--handlers", "/nonexistent"])
            .args(["invoke", "PublishMetrics", "--event", "-"]),
        b"not json",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the event - is not JSON"), "{stderr}");
}

/// `cmd` run without an AWS profile, `stdin` written to it, its output collected.
fn with_stdin(cmd: &mut Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .env_remove("AWS_PROFILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The throughput proxy in front of moto, called with the real DynamoDB client: a write the
/// empty bucket cannot pay for is refused as DynamoDB refuses it (and the handler reads it as a
/// throttle), capacity accrues at the provisioned rate, a failed condition is charged, and
/// reads pass through unmetered.
#[tokio::test(flavor = "multi_thread")]
async fn the_throughput_proxy_meters_and_throttles_writes_as_dynamodb_does() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use local::throughput::{Burst, Provisioned, Throughput};
    use publish_metrics::{Chunk, DynamoStore, Pending, Store, WriteError};

    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let direct = aws_sdk_dynamodb::Client::new(&config);
    let table = "metered";
    support::aws::create_metrics_table(&direct, table).await;
    let proxy = Throughput::start(&moto.endpoint, &[Provisioned { table: table.into(), wcu: 5 }], 1.0, Burst::Empty)
        .await
        .unwrap();
    let via = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .endpoint_url(&proxy.endpoint)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build(),
    );
    let store = DynamoStore::new(
        publish_metrics::client(
            &aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&proxy.endpoint)
                .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                    aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests"),
                ))
                .http_client(connection::https_client())
                .build(),
        ),
        table,
    );
    let order = |id: &str| {
        let invocation = publish_metrics::Invocation::with_time_left(Duration::from_secs(30));
        let event = order_events::OrderEvent::from_body(&event(id, "Latte"), invocation.now).unwrap();
        Chunk::new(vec![Pending::new(event, format!("m-{id}"), &invocation)])
    };

    // Empty at the start: a transaction of 3 items (6 WCU) is refused, nothing reaches moto.
    let refused = store.write(&order("a")).await.unwrap_err();
    assert!(
        matches!(refused, WriteError::Throttled(ref m) if m.contains("ProvisionedThroughputExceeded")),
        "{refused:?}"
    );
    assert!(support::aws::counters(&direct, table).await.is_empty());
    // 6 WCU accrue in 1.2 s at 5 WCU/s.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(store.write(&order("a")).await.unwrap(), 6);
    // At once, a single write of a 20 KB item (20 WCU) the bucket cannot pay for: DynamoDB's own
    // exception.
    let put = via
        .put_item()
        .table_name(table)
        .item("PK", AttributeValue::S("x".into()))
        .item("SK", AttributeValue::S("y".into()))
        .item("blob", AttributeValue::S("z".repeat(20 * 1024 - 10)))
        .send()
        .await
        .unwrap_err();
    let put = put.into_service_error();
    assert!(put.is_provisioned_throughput_exceeded_exception(), "{put:?}");
    // The same order again: its condition fails, and that is charged too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = store.write(&order("a")).await.unwrap_err();
    assert!(matches!(again, WriteError::AlreadyCounted { .. }), "{again:?}");
    // Reads pass through, unmetered.
    let read = via.scan().table_name(table).send().await.unwrap();
    assert_eq!(read.count(), 3, "a dedupe record and two counters: {read:?}");

    let ledger = proxy.ledger();
    let summary: Vec<(u64, bool, &str)> = ledger.iter().map(|c| (c.wcu, c.throttled, c.operation)).collect();
    assert_eq!(
        summary,
        [
            (6, true, "TransactWriteItems"),
            (6, false, "TransactWriteItems"),
            (20, true, "PutItem"),
            (6, false, "TransactWriteItems")
        ]
    );
}

/// The workshop's original load test reuses order IDs 1000.. on every run: a second run within
/// the dedupe window counts nothing, and the summary says why instead of saying nothing.
#[test]
fn a_second_run_with_the_workshops_order_ids_counts_nothing_and_says_why() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_local"))
            .args(["--endpoint-url", &moto.endpoint, "--in-process", "--time-scale", "0.05", "--count", "20"])
            .arg("--workshop-order-ids")
            .arg("--lambda-dir")
            .arg(zips.path())
            .arg("--logs")
            .arg(logs.path())
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        (out.status.success(), support::text(&out.stdout), support::text(&out.stderr))
    };
    let (ok, stdout, stderr) = run();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!stdout.contains("MISMATCH") && !stdout.contains("duplicates of orders"), "{stdout}");
    let (ok, stdout, stderr) = run();
    assert!(!ok, "a run that counted nothing fails: {stdout}\n{stderr}");
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert!(stdout.contains("20 records were duplicates of orders counted before"), "{stdout}");
}

/// `local serve` as a user runs it: the stack's real binaries behind Lambda's Invoke API.
/// EventsLoadTest, invoked with the AWS SDK, puts orders on the bus and the rule routes them to
/// MetricsQueue on moto; the queue's messages, handed to PublishMetrics with `aws lambda invoke
/// --endpoint-url`, are counted in the table; Ctrl-C stops it and it exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn local_serve_puts_the_real_binaries_behind_lambdas_invoke_api() {
    use std::io::BufRead;
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let mut child = local(&moto, zips.path(), &["serve", "--port", "0"], logs.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (endpoint, printed) = tokio::task::spawn_blocking(move || {
        let mut printed = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("try: ") {
                let endpoint = printed.lines().find_map(|l| l.strip_prefix("serving Lambda's Invoke API on "));
                return (endpoint.expect("the endpoint is printed").to_owned(), printed);
            }
        }
        panic!("serve ended before it served: {printed}");
    })
    .await
    .unwrap();
    assert!(printed.contains("PublishMetrics (reserved concurrency 1)"), "{printed}");

    let config = support::moto::sdk_config_at(&endpoint).await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    let out = lambda
        .invoke()
        .function_name("EventsLoadTest")
        .payload(aws_sdk_lambda::primitives::Blob::new(r#"{"count": 12, "runId": "serve"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), None, "{:?}", out.payload());
    let report: serde_json::Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(report["sent"], 12, "{report}");

    // The orders on MetricsQueue, as the mapping would receive them, handed to PublishMetrics.
    let moto_config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&moto_config);
    let url = sqs.get_queue_url().queue_name("MetricsQueue").send().await.unwrap().queue_url().unwrap().to_owned();
    let mut messages = Vec::new();
    while messages.len() < 12 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        assert!(!got.messages().is_empty(), "the rule routed {} of 12 orders", messages.len());
        messages.extend(got.messages().iter().cloned());
    }
    let arn = "arn:aws:sqs:us-east-1:123456789012:MetricsQueue";
    let dir = tempfile::tempdir().unwrap();
    let (event_file, out_file) = (dir.path().join("event.json"), dir.path().join("out.json"));
    let mut counted = 0;
    for batch in messages.chunks(10) {
        let event = lambda_local::sqs::event(batch, arn, "us-east-1");
        std::fs::write(&event_file, serde_json::to_vec(&event).unwrap()).unwrap();
        let out = support::aws_lambda_invoke(&endpoint)
            .args(["--function-name", "PublishMetrics", "--payload"])
            .arg(format!("fileb://{}", event_file.display()))
            .arg(&out_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", support::text(&out.stdout), support::text(&out.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((answer["StatusCode"].as_u64(), answer.get("FunctionError")), (Some(200), None), "{answer}");
        let response: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
        assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
        counted += batch.len();
    }
    assert_eq!(counted, 12);
    let ddb = aws_sdk_dynamodb::Client::new(&moto_config);
    let counters = report::counters(&ddb, "serverlesspresso-metrics-table").await.unwrap();
    let total: u64 = counters.iter().filter(|(sk, _)| sk.ends_with("#TotalSales")).map(|(_, v)| v).sum();
    assert_eq!(total, 12, "{counters:?}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stderr = support::text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted: stopping the functions and the endpoint"), "{stderr}");
    assert!(
        stderr.contains("EventsLoadTest ") && stderr.contains("RequestResponse: ok"),
        "each invocation is reported: {stderr}"
    );
    let written = std::fs::read_to_string(logs.path().join("PublishMetrics.jsonl")).unwrap();
    assert!(written.contains("platform.report"), "the functions' logs are written");
}
