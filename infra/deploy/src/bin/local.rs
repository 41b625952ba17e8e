//! `local`: the whole workshop without an AWS account. Deploys the standalone stack to a moto
//! server, runs the load test through the real bus and rule into MetricsQueue, consumes it with
//! PublishMetrics' logic under the template's mapping settings, and checks the table's counts
//! against what was sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use deploy::deployer::{Approval, DeployOptions, Deployer, Target};
use deploy::local::{self, ConsumeOptions, MotoServer};
use deploy::{Connection, StackArgs, StackChoice};
use events_load_test::{EventBridgeBus, Input, RetryPolicy};
use order_events::DetailType;
use publish_metrics::DynamoStore;

/// Run the metrics pipeline on a local endpoint and check the counts.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// With --endpoint-url, that endpoint instead of starting moto (it should be empty: counts
    /// are compared with what this run sends). Local credentials are always used.
    #[command(flatten)]
    connection: Connection,
    /// The moto_server to start [default: the test tools' venv, then PATH].
    #[arg(long)]
    moto_server: Option<PathBuf>,
    /// `OrderManager.WaitingCompletion` orders to send.
    #[arg(long, default_value_t = 500)]
    count: u32,
    /// `OrderManager.OrderCompleted` events to send too.
    #[arg(long, default_value_t = 0)]
    completed: u32,
    /// `OrderManager.OrderCancelled` events to send too.
    #[arg(long, default_value_t = 0)]
    cancelled: u32,
    /// Scale the batching window and visibility timeout (0.1 makes the 30 s window 3 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Give up consuming after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Where cargo-lambda wrote the zips (moto stores them; it cannot run them).
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // On Ctrl-C or SIGTERM the run is dropped, which stops the moto server it started.
    deploy::run_main(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| anyhow!("cannot listen for SIGTERM: {e}"))?;
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = terminate.recv() => Err(anyhow!("terminated")),
        }
    })
}

fn moto_server(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let venv = deploy::assets::default_lambda_dir().with_file_name("tmp").join("tools-venv/bin/moto_server");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("moto_server")
        }
    })
}

async fn run(args: Args) -> Result<bool> {
    // Kept alive until the end of the run; dropping it stops the server.
    let mut _moto = None;
    let endpoint = match args.connection.endpoint_url.clone() {
        Some(e) => e,
        None => {
            let server = MotoServer::start(&moto_server(args.moto_server.clone()))?;
            println!("moto is listening on {}", server.endpoint);
            let e = server.endpoint.clone();
            _moto = Some(server);
            e
        }
    };
    let connection = Connection { endpoint_url: Some(endpoint), local_credentials: true, ..args.connection.clone() };
    // The stack that creates its own bus: nothing else exists on a fresh endpoint.
    let selection = StackArgs { stack: StackChoice::Standalone, stack_name: None };
    let target = Target::new(&selection)?;
    let config = connection.sdk_config().await;

    let bucket = "serverlesspresso-local-assets";
    let deployer = Deployer::connect(&connection).await;
    let mut print = |p: deploy::cloudformation::Progress| println!("{p}");
    println!("{}", deployer.bootstrap(bucket, &mut print).await?);
    let options = DeployOptions {
        asset_bucket: Some(bucket.to_owned()),
        yes: true,
        lambda_dir: args.lambda_dir.clone(),
        ..Default::default()
    };
    let outcome = deployer.deploy(&target, &options, &mut |_| Approval::Yes, &mut print).await?;
    if !outcome.succeeded() {
        eprintln!("{outcome}");
        return Ok(false);
    }
    println!("{outcome}");

    // Physical names from the stack's handles (the metrics stack names every resource).
    let app = &target.app;
    let named = |name: Option<&str>, what: &dyn std::fmt::Display| -> Result<String> {
        name.map(str::to_owned).ok_or_else(|| anyhow!("{what} has no physical name"))
    };
    let lambda = aws_sdk_lambda::Client::new(&config);
    let publish = named(app.publish().physical_name(), app.publish().construct())?;
    let disabled = local::disable_mappings(&lambda, &publish).await?;
    println!("disabled moto's poller for {disabled} event source mapping(s): this run consumes the queue itself");

    let events = aws_sdk_eventbridge::Client::new(&config);
    let bus = EventBridgeBus::new(events, app.bus().name());
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    let started = Instant::now();
    // Order IDs unique to this run, so a second run on the same endpoint sends new orders.
    let run_id = format!("local-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    for (detail_type, count) in [
        (DetailType::WaitingCompletion, args.count),
        (DetailType::OrderCompleted, args.completed),
        (DetailType::OrderCancelled, args.cancelled),
    ] {
        if count == 0 {
            continue;
        }
        let input = Input { count: Some(count), detail_type: Some(detail_type), ..Default::default() };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        let report = events_load_test::run(&bus, &input, &run_id, RetryPolicy::default(), deadline).await?;
        println!("load test: {} {} sent, {} failed", report.sent, detail_type.as_str(), report.failed);
        sent += report.sent as usize;
        match detail_type {
            DetailType::WaitingCompletion => {
                *expected.entry("TotalSales".into()).or_default() += u64::from(report.sent);
                for (drink, n) in &report.per_drink {
                    *expected.entry(drink.clone()).or_default() += u64::from(*n);
                }
            }
            DetailType::OrderCompleted => *expected.entry("Completed".into()).or_default() += u64::from(report.sent),
            DetailType::OrderCancelled => *expected.entry("Cancelled".into()).or_default() += u64::from(report.sent),
        }
    }

    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = |q: String| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(&q)
                .send()
                .await
                .with_context(|| format!("no queue {q}"))
                .map(|o| o.queue_url().unwrap_or_default().to_owned())
        }
    };
    let queue_url = url(named(app.queue().physical_name(), app.queue().construct())?).await?;
    let dlq_url = url(named(app.dead_letters().physical_name(), app.dead_letters().construct())?).await?;
    let settings = local::mapping_settings(app.mapping());
    println!(
        "consuming with {} consumer(s), batches of {}, window {:?} (scaled {}x)",
        settings.consumers, settings.batch_size, settings.batching_window, args.time_scale
    );
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let table = named(app.table().physical_name(), app.table().construct())?;
    let store = Arc::new(DynamoStore::new(ddb.clone(), &table));
    let consume = ConsumeOptions { settings, time_scale: args.time_scale, timeout: Duration::from_secs(args.timeout) };
    let tally = local::consume(&sqs, &queue_url, &dlq_url, store, &consume, sent, &mut |s| println!("{s}")).await?;
    let elapsed = started.elapsed();

    // Counts per metric over every day (a run may cross midnight).
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (sk, val) in local::counters(&ddb, &table).await? {
        if let Some((_, metric)) = sk.split_once('#') {
            *counted.entry(metric.to_owned()).or_default() += val;
        }
    }
    println!("\n{:<20} {:>9} {:>9}", "metric", "sent", "counted");
    let mut ok = true;
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(counted.keys()).collect();
    for k in keys {
        let (e, c) = (expected.get(k).copied().unwrap_or(0), counted.get(k).copied().unwrap_or(0));
        ok &= e == c;
        println!("{k:<20} {e:>9} {c:>9}{}", if e == c { "" } else { "  MISMATCH" });
    }
    let wcu = tally.wcu;
    println!(
        "\n{} events in {:.1} s: {} batches, {} transactions ({} items, {} WCU computed, {:.2} WCU per event)",
        sent,
        elapsed.as_secs_f64(),
        tally.batches,
        tally.transactions,
        tally.transaction_items,
        wcu,
        wcu as f64 / tally.counted.max(1) as f64
    );
    println!("{}", if ok { "counts match what was sent" } else { "counts DIFFER from what was sent" });
    Ok(ok)
}
