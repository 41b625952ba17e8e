//! `local`: the whole workshop without an AWS account or Docker. Deploys the standalone stack to
//! a moto server, runs EventsLoadTest's real binary through an embedded Lambda Runtime API to put
//! orders on the real bus and rule into MetricsQueue, drains the queue with PublishMetrics' real
//! binary under the template's event source mapping, and checks the table's counts against
//! what was sent. `local invoke` runs one function once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use deploy::deployer::{Approval, DeployOptions, Deployer, Target};
use deploy::{Connection, StackArgs, StackChoice};
use events_load_test::{EventBridgeBus, Input, Report, RetryPolicy};
use lambda_local::{Credentials, FunctionConfig, Instance, LogLine, LogSink};
use local::lambda::{self as real, LocalAws};
use local::{in_process, MotoServer, Tally};
use order_events::{DetailType, Metric, MetricKey};
use publish_metrics::DynamoStore;

/// Run the metrics pipeline on a local endpoint with the handlers' real binaries and check the
/// counts.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Invoke one function once with an event; print its response (stdout) and logs (stderr).
    Invoke(InvokeArgs),
}

#[derive(clap::Args, Clone)]
struct Common {
    /// With --endpoint-url, that endpoint instead of starting moto (it should be empty: counts
    /// are compared with what this run sends). Local credentials are always used.
    #[command(flatten)]
    connection: Connection,
    /// The moto_server to start [default: the test tools' venv, then PATH].
    #[arg(long, global = true)]
    moto_server: Option<PathBuf>,
    /// Where cargo-lambda wrote the zips (the stack's code; moto stores them, and this run
    /// executes the same sources built for this machine).
    #[arg(long, global = true)]
    lambda_dir: Option<PathBuf>,
    /// A directory holding the handlers built for this machine (`publish-metrics`,
    /// `events-load-test`) [default: build them now with cargo].
    #[arg(long, global = true)]
    handlers: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// `OrderManager.WaitingCompletion` orders to send.
    #[arg(long, default_value_t = 500)]
    count: u32,
    /// `OrderManager.OrderCompleted` events to send too.
    #[arg(long, default_value_t = 0)]
    completed: u32,
    /// `OrderManager.OrderCancelled` events to send too.
    #[arg(long, default_value_t = 0)]
    cancelled: u32,
    /// The drink mix the load test picks from, comma-separated [default: EventsLoadTest's:
    /// Latte, Cappuccino, Espresso].
    #[arg(long, value_delimiter = ',')]
    drinks: Option<Vec<String>>,
    /// Seed of the load test's drink choice [default: EventsLoadTest's].
    #[arg(long)]
    seed: Option<u64>,
    /// Scale the batching window and visibility timeout (0.1 makes the 30 s window 3 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Give up consuming after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Fast mode: no binaries; the load test and PublishMetrics' logic run in this process.
    #[arg(long)]
    in_process: bool,
    /// Where the functions' logs go, one JSON Lines file per function [default:
    /// <target>/local-logs].
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Print every log line too, prefixed with the function and request ID.
    #[arg(long)]
    print_logs: bool,
}

#[derive(clap::Args)]
struct InvokeArgs {
    /// The function: PublishMetrics or EventsLoadTest.
    function: String,
    /// The event: a JSON file, or - for standard input.
    #[arg(long)]
    event: String,
}

/// The run's flags given on the command line, by their long names: `invoke` takes none of them
/// (clap accepts them before the subcommand, where they would be silently ignored).
fn run_flags_given(matches: &clap::ArgMatches) -> Vec<String> {
    use clap::Args as _;
    RunArgs::augment_args(clap::Command::new("run"))
        .get_arguments()
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
        .collect()
}

fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if cli.command.is_some() {
        let given = run_flags_given(&matches);
        if !given.is_empty() {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{} cannot be used with `invoke` (they set up a full run)", given.join(", ")),
                )
                .exit();
        }
    }
    cli
}

fn main() -> ExitCode {
    let cli = parse();
    // On Ctrl-C or SIGTERM the run is dropped, which stops the moto server and the functions'
    // processes it started.
    deploy::run_main(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| anyhow!("cannot listen for SIGTERM: {e}"))?;
        let work = async {
            match cli.command {
                Some(Command::Invoke(args)) => invoke(cli.common, args).await,
                None => run(cli.common, cli.run).await,
            }
        };
        tokio::select! {
            r = work => r,
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

/// The standalone stack deployed on a local endpoint, and what the functions need to run there.
struct Local {
    // Kept alive until the end of the run; dropping it stops the server.
    _moto: Option<MotoServer>,
    config: aws_config::SdkConfig,
    target: Target,
    aws: LocalAws,
    ids: BTreeMap<String, real::Deployed>,
}

async fn deploy_locally(common: &Common, quiet: bool) -> Result<Local> {
    let say = |s: &dyn std::fmt::Display| {
        if quiet {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    let mut moto = None;
    let endpoint = match common.connection.endpoint_url.clone() {
        Some(e) => e,
        None => {
            let server = MotoServer::start(&moto_server(common.moto_server.clone()))?;
            say(&format!("moto is listening on {}", server.endpoint));
            let e = server.endpoint.clone();
            moto = Some(server);
            e
        }
    };
    let connection =
        Connection { endpoint_url: Some(endpoint.clone()), local_credentials: true, ..common.connection.clone() };
    // The stack that creates its own bus: nothing else exists on a fresh endpoint.
    let selection = StackArgs { stack: StackChoice::Standalone, stack_name: None };
    let target = Target::new(&selection)?;
    let config = connection.sdk_config().await;
    let bucket = "serverlesspresso-local-assets";
    let deployer = Deployer::connect(&connection).await;
    let mut print = |p: deploy::cloudformation::Progress| say(&p);
    say(&deployer.bootstrap(bucket, &mut print).await?);
    let options = DeployOptions {
        asset_bucket: Some(bucket.to_owned()),
        yes: true,
        lambda_dir: common.lambda_dir.clone(),
        ..Default::default()
    };
    let outcome = deployer.deploy(&target, &options, &mut |_| Approval::Yes, &mut print).await?;
    if !outcome.succeeded() {
        return Err(anyhow!("the local deploy did not succeed: {outcome}"));
    }
    say(&outcome);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let publish = target.app.publish().physical_name().unwrap_or_default().to_owned();
    let disabled = local::disable_mappings(&lambda, &publish).await?;
    say(&format!("disabled moto's poller for {disabled} event source mapping(s): this run drives the queue itself"));
    let aws = LocalAws {
        endpoint_url: endpoint,
        region: config.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        account_id: deployer.account().await?.to_owned(),
        credentials: Credentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        },
    };
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let mut ids = deploy::cloudformation::resources(&cfn, &target.name).await?;
    let bus = target.app.bus();
    if let Some(construct) = bus.construct() {
        real::fill_missing(&mut ids, &construct.id, bus.name());
    }
    Ok(Local { _moto: moto, config, target, aws, ids })
}

fn handlers(common: &Common) -> Result<PathBuf> {
    match &common.handlers {
        Some(dir) => Ok(dir.clone()),
        None => {
            eprintln!("building the handlers for this machine (cargo build --bins) ...");
            // The workspace this binary was built from.
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            Ok(real::build_handlers(&workspace)?)
        }
    }
}

/// One JSON Lines file per function: every line as `{"function", "requestId", "stream",
/// "message"}`, a JSON log line kept as JSON.
struct LogFiles {
    dir: PathBuf,
    files: Mutex<BTreeMap<String, std::io::BufWriter<std::fs::File>>>,
}

impl LogFiles {
    fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(LogFiles { dir, files: Mutex::new(BTreeMap::new()) })
    }

    fn path(&self, function: &str) -> PathBuf {
        self.dir.join(format!("{function}.jsonl"))
    }

    fn write(&self, line: &LogLine) {
        let message = serde_json::from_str::<serde_json::Value>(&line.line)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::Value::String(line.line.clone()));
        let record = serde_json::json!({
            "function": line.function, "requestId": line.request_id, "stream": line.stream, "message": message,
        });
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if !files.contains_key(&line.function) {
            match std::fs::File::create(self.path(&line.function)) {
                Ok(f) => {
                    files.insert(line.function.clone(), std::io::BufWriter::new(f));
                }
                Err(e) => {
                    eprintln!("cannot write {}: {e}", self.path(&line.function).display());
                    return;
                }
            }
        }
        if let Some(f) = files.get_mut(&line.function) {
            let _ = writeln!(f, "{record}");
        }
    }

    fn flush(&self) {
        for f in self.files.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
            let _ = f.flush();
        }
    }
}

async fn run(common: Common, args: RunArgs) -> Result<bool> {
    let handlers = if args.in_process { None } else { Some(handlers(&common)?) };
    let env = deploy_locally(&common, false).await?;
    let app = &env.target.app;
    let named = |name: Option<&str>, what: &dyn std::fmt::Display| -> Result<String> {
        name.map(str::to_owned).ok_or_else(|| anyhow!("{what} has no physical name"))
    };
    let logs = Arc::new(LogFiles::new(
        args.logs.clone().unwrap_or_else(|| deploy::assets::default_lambda_dir().with_file_name("local-logs")),
    )?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sink: LogSink = {
        let (logs, tally, print) = (logs.clone(), tally.clone(), args.print_logs);
        let publish = named(app.publish().physical_name(), app.publish().construct())?;
        Arc::new(move |line: LogLine| {
            if print {
                eprintln!("{line}");
            }
            if line.function == publish {
                real::add_emf(&line, &mut tally.lock().unwrap_or_else(|p| p.into_inner()));
            }
            logs.write(&line);
        })
    };
    let config = |f: &cfn::constructs::lambda::Function, dir: &Path| -> Result<Arc<FunctionConfig>> {
        let binary = real::binary_of(f, dir)?;
        Ok(Arc::new(real::function_config(f, binary, &env.ids, &env.aws, &env.target.name, sink.clone())?))
    };

    // The load test: EventsLoadTest's binary, invoked once per detail type.
    let started = Instant::now();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    // Order IDs unique to this run, so a second run on the same endpoint sends new orders.
    let run_id = format!("local-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    let mut load_test = match &handlers {
        Some(dir) => Some(Instance::new(config(app.load_test(), dir)?, 0)),
        None => None,
    };
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&env.config), app.bus().name());
    for (detail_type, count) in [
        (DetailType::WaitingCompletion, args.count),
        (DetailType::OrderCompleted, args.completed),
        (DetailType::OrderCancelled, args.cancelled),
    ] {
        if count == 0 {
            continue;
        }
        let report: Report = match &mut load_test {
            Some(instance) => {
                let mut input = serde_json::json!({"count": count, "detailType": detail_type, "runId": run_id});
                if let Some(drinks) = &args.drinks {
                    input["drinks"] = serde_json::json!(drinks);
                }
                if let Some(seed) = args.seed {
                    input["seed"] = serde_json::json!(seed);
                }
                let invocation = instance.invoke(input.to_string()).await?;
                real::load_test_report(&invocation.outcome)?
            }
            None => {
                let input = Input {
                    count: Some(count),
                    detail_type: Some(detail_type),
                    drinks: args.drinks.clone(),
                    seed: args.seed,
                    ..Default::default()
                };
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
                events_load_test::run(&bus, &input, &run_id, RetryPolicy::default(), deadline).await?
            }
        };
        println!("load test: {} {} sent, {} failed", report.sent, detail_type.as_str(), report.failed);
        sent += report.sent as usize;
        let metric = match detail_type {
            DetailType::WaitingCompletion => Metric::TotalSales,
            DetailType::OrderCompleted => Metric::Completed,
            DetailType::OrderCancelled => Metric::Cancelled,
        };
        *expected.entry(metric.name().to_owned()).or_default() += u64::from(report.sent);
        // Only a waiting order counts its drink (the report names drinks for every type).
        if detail_type == DetailType::WaitingCompletion {
            for (drink, n) in &report.per_drink {
                *expected.entry(drink.clone()).or_default() += u64::from(*n);
            }
        }
    }
    if let Some(mut instance) = load_test {
        instance.shutdown().await;
    }

    let sqs = aws_sdk_sqs::Client::new(&env.config);
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
    let ddb = aws_sdk_dynamodb::Client::new(&env.config);
    let table = named(app.table().physical_name(), app.table().construct())?;
    let timeout = Duration::from_secs(args.timeout);
    let mut progress = |s: &local::Standing| println!("{s}");
    let (tally, invocations) = match &handlers {
        Some(dir) => {
            let mapping = real::sqs_mapping(app.mapping(), &queue_url, &env.aws, args.time_scale);
            println!(
                "PublishMetrics ({}): reserved concurrency {:?}, {} pollers at first, batches of {}, window {:?}, ReportBatchItemFailures {}",
                real::binary_of(app.publish(), dir)?.display(),
                mapping.reserved_concurrency,
                mapping.initial_batches(),
                mapping.batch_size,
                mapping.batching_window,
                mapping.report_batch_item_failures
            );
            let function = config(app.publish(), dir)?;
            let stats =
                real::consume(&sqs, mapping, &dlq_url, function, tally.clone(), timeout, sent, &mut progress).await?;
            let t = tally.lock().map_err(|_| anyhow!("the log reader panicked"))?.clone();
            (t, Some(real::invocations(&stats)))
        }
        None => {
            let settings = local::mapping_settings(app.mapping());
            println!(
                "in-process mode: {} consumer(s), batches of {}, window {:?} (scaled {}x)",
                settings.consumers, settings.batch_size, settings.batching_window, args.time_scale
            );
            let store = Arc::new(DynamoStore::new(ddb.clone(), &table));
            let budget = app.capacity().budget.scaled(args.time_scale);
            let consume = in_process::ConsumeOptions { settings, time_scale: args.time_scale, timeout, budget };
            (in_process::consume(&sqs, &queue_url, &dlq_url, store, &consume, sent, &mut progress).await?, None)
        }
    };
    let elapsed = started.elapsed();
    logs.flush();

    // Counts per metric over every day (a run may cross midnight).
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    // A sort key that is not a metric key stays a row of its own, so it shows as a mismatch.
    for (sk, val) in report::counters(&ddb, &table).await? {
        let metric = MetricKey::parse_sort_key(&sk).map_or(sk, |k| k.metric.name().to_owned());
        *counted.entry(metric).or_default() += val;
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
    if let Some(i) = invocations {
        println!(
            "PublishMetrics: {} invocations, {} errors, {} timeouts; logs in {}",
            i.invocations,
            i.errors,
            i.timeouts,
            logs.dir.display()
        );
    }
    println!("{}", if ok { "counts match what was sent" } else { "counts DIFFER from what was sent" });
    Ok(ok)
}

async fn invoke(common: Common, args: InvokeArgs) -> Result<bool> {
    let event = if args.event == "-" {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut s).context("cannot read the event from stdin")?;
        s
    } else {
        std::fs::read(&args.event).with_context(|| format!("cannot read the event {}", args.event))?
    };
    serde_json::from_slice::<serde_json::Value>(&event)
        .with_context(|| format!("the event {} is not JSON", args.event))?;
    let dir = handlers(&common)?;
    let env = deploy_locally(&common, true).await?;
    let app = &env.target.app;
    let names: Vec<String> = app.functions().iter().map(|f| f.physical_name().unwrap_or_default().to_owned()).collect();
    let function = app
        .functions()
        .into_iter()
        .find(|f| f.physical_name() == Some(args.function.as_str()))
        .ok_or_else(|| anyhow!("no function {} in the stack (there are: {})", args.function, names.join(", ")))?;
    let sink: LogSink = Arc::new(|line: LogLine| eprintln!("{line}"));
    let binary = real::binary_of(function, &dir)?;
    let config = real::function_config(function, binary, &env.ids, &env.aws, &env.target.name, sink)?;
    let invocation = real::invoke_once(Arc::new(config), event).await?;
    println!("{}", invocation.outcome);
    Ok(!invocation.outcome.is_error())
}
