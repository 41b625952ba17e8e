//! One local run: deploy, meter the table, load test, drain, count, graph, summarize.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use cfn::constructs::capacity::Duration as Span;
use cfn::constructs::dynamodb::Billing;
use events_load_test::{EventBridgeBus, Input, Report, RetryPolicy};
use lambda_local::sqs::MappingStats;
use lambda_local::{Instance, LogLine, LogSink};
use order_events::capacity::{Peak, WriteBudget};
use order_events::{DetailType, MetricKey, OrderEvent};
use publish_metrics::DynamoStore;
use serde::Serialize;

use crate::environment::{Environment, EnvironmentOptions};
use crate::error::aws;
use crate::functions::{self, LocalAws};
use crate::graphs::{self, Field};
use crate::logs::LogFiles;
use crate::series::{Gauges, Recorder, Totals};
use crate::throughput::{self, Burst, Provisioned, Throughput};
use crate::{in_process, until_drained, Drain, Invocations, LocalError, OncePerSecond, Standing, Tally};

/// Who runs the functions.
#[derive(Clone, Debug, PartialEq)]
pub enum Driver {
    /// The handlers' binaries (the deployed ones, or a build for this machine), behind
    /// `lambda-local`.
    Binaries { handlers: crate::artifact::Handlers },
    /// The fast mode: the load test and PublishMetrics' logic in this process.
    InProcess,
}

/// The orders the load test sends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Orders {
    pub waiting: u32,
    pub completed: u32,
    pub cancelled: u32,
    /// The drink mix [default: the load test's].
    pub drinks: Option<Vec<String>>,
    pub seed: Option<u64>,
    /// The workshop's order IDs (1000, 1001, ...: the same every run) instead of this run's.
    pub workshop_order_ids: bool,
}

/// What-if changes to the deployed stack's settings, for this run only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// PublishMetrics writes as fast as DynamoDB answers.
    pub unpaced: bool,
    /// PublishMetrics' reserved concurrency (`Some(None)`: none, the account's pool).
    pub reserved_concurrency: Option<Option<u32>>,
    /// MetricsQueue's visibility timeout, in seconds of AWS's clock (scaled like the rest).
    pub visibility_timeout_secs: Option<u32>,
}

impl Overrides {
    /// Each change, in words.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unpaced {
            out.push("PublishMetrics is not paced (WRITE_BUDGET_WCU_PER_SECOND=unpaced)".to_owned());
        }
        match self.reserved_concurrency {
            Some(Some(n)) => out.push(format!("PublishMetrics' reserved concurrency is {n}")),
            Some(None) => out.push("PublishMetrics has no reserved concurrency".to_owned()),
            None => {}
        }
        if let Some(v) = self.visibility_timeout_secs {
            out.push(format!("MetricsQueue's visibility timeout is {v} s"));
        }
        out
    }

    /// Refuses what AWS would refuse of `app` changed this way: a queue whose visibility
    /// timeout is below its consumer's timeout (CreateEventSourceMapping says no).
    pub fn check(&self, app: &metrics_stack::MetricsStack) -> Result<(), LocalError> {
        let timeout = app.publish().timeout_secs();
        match self.visibility_timeout_secs {
            Some(v) if v < timeout => Err(LocalError::Refused(format!(
                "--visibility-timeout {v}: AWS refuses an SQS mapping whose queue's visibility timeout is below the function's timeout ({timeout} s)"
            ))),
            _ => Ok(()),
        }
    }
}

/// Everything a run needs.
#[derive(Clone)]
pub struct RunOptions {
    pub environment: EnvironmentOptions,
    pub driver: Driver,
    pub orders: Orders,
    /// Multiplies every duration of the story (window, visibility, timeouts of the mapping, the
    /// table's refill): 0.1 runs ten times as fast.
    pub time_scale: f64,
    /// Give up draining after this long.
    pub timeout: Duration,
    /// Where the functions' logs go (one JSON Lines file per function).
    pub logs: PathBuf,
    /// The HTML file of the workshop's graphs.
    pub graphs: PathBuf,
    pub overrides: Overrides,
    pub burst: Burst,
    /// Every log line, as it comes (for `--print-logs`).
    pub echo_logs: Option<LogSink>,
}

/// What a run reports while it goes.
#[derive(Clone, Debug)]
pub enum Event {
    /// A step of the setup.
    Note(String),
    /// One load test invocation's report.
    LoadTest { detail_type: DetailType, sent: u32, failed: u32 },
    /// Where things stand, once a second while the queue drains.
    Standing(Standing),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Note(n) => f.write_str(n),
            Event::LoadTest { detail_type, sent, failed } => {
                write!(f, "load test: {sent} {} sent, {failed} failed", detail_type.as_str())
            }
            Event::Standing(s) => write!(f, "{s}"),
        }
    }
}

/// One metric's figures: what was sent, what the table counted, and what waits in the DLQ
/// without having been counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRow {
    pub metric: String,
    pub sent: u64,
    pub counted: u64,
    pub dead_lettered: u64,
}

/// What Lambda did during the drain (real binaries only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFigures {
    #[serde(flatten)]
    pub invocations: Invocations,
    pub cold_starts: u64,
    /// Batches throttled until their visibility timeout ended.
    pub expired_batches: u64,
    /// The most executions running at once.
    pub peak_concurrency: u32,
}

/// What the table took.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableFigures {
    pub provisioned_wcu: Option<u32>,
    /// PublishMetrics' write budget per instance, as it ran (scaled to the run's clock).
    pub budget: String,
    /// Consumed as DynamoDB meters it (the throughput proxy), and refused for throughput.
    pub consumed_wcu: u64,
    pub throttled_requests: u64,
    pub throttled_wcu: u64,
    /// The most WCU written within any 60 s of the run's clock, and what the provisioned
    /// capacity allows in that time.
    pub most_wcu_in_a_minute: u64,
    pub provisioned_wcu_per_minute: Option<u64>,
    /// The largest single write: what pacing may add to a minute's budget.
    pub largest_write_wcu: u64,
    /// PublishMetrics' transactions and their items, by its EMF lines.
    pub transactions: usize,
    pub transaction_items: usize,
    /// Write attempts the handler saw refused.
    pub throttled_writes: u64,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub stack: String,
    /// What this run changed from the deployed stack.
    pub overrides: Vec<String>,
    pub time_scale: f64,
    pub metrics: Vec<MetricRow>,
    /// Every order counted once or waiting in the DLQ uncounted; none twice, none lost.
    pub exact: bool,
    pub sent: u64,
    /// From every order on the queue to the queue found empty, in seconds of the run's clock;
    /// and what synth's capacity arithmetic predicts for these orders (paced runs).
    pub drain_secs: f64,
    pub predicted_drain_secs: Option<f64>,
    pub tally: Tally,
    pub lambda: Option<LambdaFigures>,
    pub table: TableFigures,
    pub logs: PathBuf,
    pub graphs: PathBuf,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<20} {:>9} {:>9} {:>9}", "metric", "sent", "counted", "DLQ")?;
        for m in &self.metrics {
            let off = if m.counted + m.dead_lettered == m.sent { "" } else { "  MISMATCH" };
            writeln!(f, "{:<20} {:>9} {:>9} {:>9}{off}", m.metric, m.sent, m.counted, m.dead_lettered)?;
        }
        if !self.exact && self.tally.duplicates > 0 {
            writeln!(
                f,
                "{} records were duplicates of orders counted before (same order ID and detail-type within the dedupe window): a producer that reuses order IDs, as --workshop-order-ids does on a second run, has those orders dropped",
                self.tally.duplicates
            )?;
        }
        writeln!(f)?;
        if !self.overrides.is_empty() {
            writeln!(f, "what-if: {}", self.overrides.join("; "))?;
        }
        write!(f, "{} events drained in {}", self.sent, Span(self.drain_secs))?;
        if self.time_scale != 1.0 {
            write!(f, " of the run's clock (x{} real time)", self.time_scale)?;
        }
        if let Some(p) = self.predicted_drain_secs {
            write!(f, "; synth's capacity arithmetic predicts {}", Span(p))?;
        }
        writeln!(f)?;
        let t = &self.table;
        let per = t.consumed_wcu as f64 / self.sent.max(1) as f64;
        write!(
            f,
            "table: {} WCU consumed ({per:.2} per event sent), {} transactions ({} items); most in any minute {}",
            t.consumed_wcu, t.transactions, t.transaction_items, t.most_wcu_in_a_minute
        )?;
        match t.provisioned_wcu_per_minute {
            Some(p) => write!(
                f,
                " (provisioned {p}; pacing may add the transaction that starts a minute: {})",
                t.largest_write_wcu
            )?,
            None => write!(f, " (on demand)")?,
        }
        let budget = if t.budget == order_events::capacity::UNPACED {
            "unpaced".to_owned()
        } else {
            format!("{} WCU/s", t.budget)
        };
        writeln!(
            f,
            "; {} requests throttled ({} WCU); PublishMetrics' budget {budget}",
            t.throttled_requests, t.throttled_wcu
        )?;
        if let Some(l) = &self.lambda {
            writeln!(
                f,
                "PublishMetrics: {} invocations, {} errors, {} timeouts, {} throttles, {} batches expired while throttled; at most {} running at once; highest receive count {}",
                l.invocations.invocations,
                l.invocations.errors,
                l.invocations.timeouts,
                l.invocations.throttles,
                l.expired_batches,
                l.peak_concurrency,
                l.invocations.max_receive_count
            )?;
        }
        writeln!(f, "logs in {}; graphs in {}", self.logs.display(), self.graphs.display())?;
        if self.exact {
            write!(f, "counts match what was sent: every order counted once or waiting in the DLQ, none twice")
        } else {
            write!(f, "counts DIFFER from what was sent")
        }
    }
}

/// The run's clock, for `WRITE_BUDGET`'s scaled value and the summary's durations.
fn scaled(d: Duration, time_scale: f64) -> f64 {
    d.as_secs_f64() / time_scale
}

/// Runs the workshop on a local endpoint and returns what happened. `events` receives the
/// progress.
pub async fn run(options: RunOptions, events: &mut (dyn FnMut(Event) + Send)) -> Result<RunSummary, LocalError> {
    let env = Environment::prepare(&options.environment, &mut |n| events(Event::Note(n))).await?;
    let app = &env.app;
    options.overrides.check(app)?;
    let overrides = options.overrides.describe();
    for o in &overrides {
        events(Event::Note(format!("what-if: {o}, for this run only (the deployed stack is unchanged)")));
    }
    let (meter, table, provisioned) = metered(&env, options.time_scale, options.burst, events).await?;
    // The functions call the endpoint through the meter.
    let functions_aws = LocalAws { endpoint_url: meter.endpoint.clone(), ..env.aws.clone() };
    let budget = if options.overrides.unpaced { WriteBudget::Unpaced } else { app.capacity().budget };
    let budget = budget.scaled(options.time_scale);

    let logs = Arc::new(LogFiles::new(options.logs.clone())?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let publish_name = env.named(app.publish().physical_name(), app.publish().construct())?;
    let sink: LogSink = {
        let (logs, tally, echo) = (logs.clone(), tally.clone(), options.echo_logs.clone());
        let publish = publish_name.clone();
        Arc::new(move |line: LogLine| {
            if let Some(echo) = &echo {
                echo(line.clone());
            }
            if line.function == publish {
                functions::add_emf(&line, &mut tally.lock().unwrap_or_else(|p| p.into_inner()));
            }
            logs.write(&line);
        })
    };

    let sqs = aws_sdk_sqs::Client::new(&env.config);
    let queue_url = env.queue_url(&sqs, &env.named(app.queue().physical_name(), app.queue().construct())?).await?;
    let dlq_url =
        env.queue_url(&sqs, &env.named(app.dead_letters().physical_name(), app.dead_letters().construct())?).await?;
    let wiring = Wiring {
        env: &env,
        aws: &functions_aws,
        sink: &sink,
        queue_url: &queue_url,
        meter: &meter.endpoint,
        table: &table,
        budget,
    };
    let mut functions = Functions::new(&options, &wiring, events)?;
    // What earlier runs on this endpoint counted: this run is judged on what it adds.
    let ddb = aws_sdk_dynamodb::Client::new(&env.config);
    let before = per_metric(report::counters(&ddb, &table).await?);
    let (expected, sent) = load_test(&options.orders, &mut functions, events).await?;
    let consumer = functions.start_drain(&sqs, &queue_url).await;

    // Every order is on the queue: the drain starts.
    let drain_started = Instant::now();
    // Four times a second the graphs' samples, once a second the progress line.
    let mut recorder = Recorder::new(meter.started());
    let mut report = OncePerSecond::new();
    let mut peak_concurrency = 0;
    let drained = {
        let drain = Drain { sqs: &sqs, queue_url: &queue_url, dlq_url: &dlq_url, timeout: options.timeout };
        until_drained(drain, &mut |queue, dead_letters| {
            let now = Instant::now();
            let (tally_now, lambda, concurrency, oldest) = consumer.snapshot(&tally, queue.waiting > 0);
            peak_concurrency = peak_concurrency.max(concurrency);
            let ledger = meter.ledger();
            let consumed = ledger.iter().filter(|c| !c.throttled).map(|c| c.wcu).sum();
            let refused = ledger.iter().filter(|c| c.throttled).map(|c| c.wcu).sum();
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            recorder.sample(
                now,
                Gauges {
                    concurrency,
                    waiting: queue.waiting,
                    in_flight: queue.in_flight,
                    dead_letters: dead_letters.waiting,
                    oldest_age_secs: oldest.map(|sent| now_ms.saturating_sub(sent) as f64 / 1000.0),
                },
                Totals {
                    throttles: lambda.map_or(0, |l| l.throttles),
                    invocations: lambda.map_or(tally_now.batches as u64, |l| l.invocations),
                    counted: tally_now.counted as u64,
                    duplicates: tally_now.duplicates as u64,
                    bad: tally_now.bad as u64,
                    failed: tally_now.failed as u64,
                },
            );
            if report.due() {
                events(Event::Standing(Standing {
                    sent,
                    queue,
                    dead_letters,
                    tally: tally_now,
                    lambda,
                    table: Some((consumed, refused)),
                }));
            }
            if consumer.stopped_early() {
                return Err(LocalError::ConsumerStopped);
            }
            Ok(())
        })
        .await
    };
    let finished = consumer.finish(&tally).await;
    let emptied = drained?;
    let (tally, lambda) = finished?;
    logs.finish()?;
    let drain_secs = scaled(emptied.saturating_duration_since(drain_started), options.time_scale);

    // What this run added to the table, and what waits in the DLQ uncounted, per metric.
    let mut counted = per_metric(report::counters(&ddb, &table).await?);
    for (metric, n) in &before {
        if let Some(c) = counted.get_mut(metric) {
            *c = c.saturating_sub(*n);
        }
    }
    counted.retain(|_, n| *n > 0);
    let dead_lettered = uncounted_dead_letters(&sqs, &dlq_url, &ddb, &table).await?;
    let names: BTreeSet<&String> = expected.keys().chain(counted.keys()).chain(dead_lettered.keys()).collect();
    let metrics: Vec<MetricRow> = names
        .into_iter()
        .map(|m| MetricRow {
            metric: m.clone(),
            sent: expected.get(m).copied().unwrap_or(0),
            counted: counted.get(m).copied().unwrap_or(0),
            dead_lettered: dead_lettered.get(m).copied().unwrap_or(0),
        })
        .collect();
    let exact = metrics.iter().all(|m| m.counted + m.dead_lettered == m.sent);

    // The graphs.
    let ledger = meter.ledger();
    let series = recorder.finish(&ledger, meter.started(), options.time_scale, provisioned);
    let mut charts = graphs::charts(app.dashboard().widgets(), &bindings(app), &series);
    charts.push(graphs::minute_chart(&series));
    let mut notes = vec![format!(
        "{sent} events, {} of the run's clock; one second on these graphs is {} s of it.",
        Span(drain_secs),
        1.0 / options.time_scale
    )];
    notes.extend(overrides.iter().map(|o| format!("What-if: {o}.")));
    let page = graphs::html(&format!("{}: a local run", env.target.name), &notes, &charts, &series)?;
    if let Some(dir) = options.graphs.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LocalError::Write { path: dir.to_owned(), source })?;
    }
    std::fs::write(&options.graphs, page)
        .map_err(|source| LocalError::Write { path: options.graphs.clone(), source })?;

    let minute = Duration::from_secs(60).mul_f64(options.time_scale);
    let predicted_drain_secs = app.capacity().plan.filter(|_| predictable(&options)).map(|plan| {
        let drinks = options.orders.drinks.as_ref().map_or(Peak::LOAD_TEST.drinks, |d| d.len() as u32);
        let per_order = Peak { orders: options.orders.waiting, drinks }.wcu_per_order(app.mapping().batch_size());
        plan.drain_secs(u64::from(options.orders.waiting), per_order)
    });
    Ok(RunSummary {
        stack: env.target.name.clone(),
        overrides,
        time_scale: options.time_scale,
        metrics,
        exact,
        sent: sent as u64,
        drain_secs,
        predicted_drain_secs,
        lambda: lambda.map(|(invocations, stats)| LambdaFigures {
            invocations,
            cold_starts: stats.cold_starts,
            expired_batches: stats.expired_batches,
            peak_concurrency,
        }),
        table: TableFigures {
            provisioned_wcu: provisioned,
            budget: budget.to_string(),
            consumed_wcu: ledger.iter().filter(|c| !c.throttled).map(|c| c.wcu).sum(),
            throttled_requests: ledger.iter().filter(|c| c.throttled).count() as u64,
            throttled_wcu: ledger.iter().filter(|c| c.throttled).map(|c| c.wcu).sum(),
            most_wcu_in_a_minute: throughput::most_in_window(&ledger, minute),
            provisioned_wcu_per_minute: provisioned.map(|w| u64::from(w) * 60),
            largest_write_wcu: ledger.iter().filter(|c| !c.throttled).map(|c| c.wcu).max().unwrap_or(0),
            transactions: tally.transactions,
            transaction_items: tally.transaction_items,
            throttled_writes: tally.throttled_writes,
        },
        tally,
        logs: logs.dir().to_owned(),
        graphs: options.graphs.clone(),
    })
}

/// Synth's prediction holds for a paced run of waiting orders on the deployed settings.
fn predictable(options: &RunOptions) -> bool {
    options.overrides == Overrides::default()
        && options.orders.completed == 0
        && options.orders.cancelled == 0
        && options.orders.waiting > 0
}

/// Which of the run's series measures each metric of the stack's dashboard.
fn bindings(app: &metrics_stack::MetricsStack) -> Vec<(cfn::constructs::cloudwatch::Metric, Field)> {
    use order_events::emf::{BAD, COUNTED, DUPLICATES, FAILED};
    vec![
        (app.publish().metric_concurrent_executions(), Field::Concurrency),
        (app.publish().metric_throttles(), Field::Throttles),
        (app.queue().metric_visible_messages(), Field::Waiting),
        (app.queue().metric_in_flight_messages(), Field::InFlight),
        (app.dead_letters().metric_visible_messages(), Field::DeadLetters),
        (app.queue().metric_oldest_message_age(), Field::OldestAge),
        (app.handler_metric(COUNTED), Field::Counted),
        (app.handler_metric(DUPLICATES), Field::Duplicates),
        (app.handler_metric(BAD), Field::Bad),
        (app.handler_metric(FAILED), Field::Failed),
        (app.table().metric_consumed_wcu(), Field::ConsumedWcu),
        (app.table().metric_provisioned_wcu(), Field::Provisioned),
    ]
}

/// The queue's consumer while it drains.
enum Consumer {
    Binaries {
        stats: Arc<Mutex<MappingStats>>,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), lambda_local::Error>>,
    },
    InProcess(in_process::InProcess),
}

impl Consumer {
    /// The counts so far, what Lambda reports, the most executions running since the last
    /// look, and when the oldest undeleted message was sent.
    fn snapshot(&self, tally: &Mutex<Tally>, waiting: bool) -> (Tally, Option<Invocations>, u32, Option<u64>) {
        match self {
            Consumer::Binaries { stats, .. } => {
                let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                let peak = s.take_peak();
                let t = tally.lock().map(|t| t.clone()).unwrap_or_default();
                (t, Some(functions::invocations(&s)), peak, s.oldest_sent_ms(waiting))
            }
            Consumer::InProcess(p) => (p.tally(), None, 0, None),
        }
    }

    fn stopped_early(&self) -> bool {
        match self {
            Consumer::Binaries { task, .. } => task.is_finished(),
            Consumer::InProcess(p) => p.stopped_early(),
        }
    }

    /// Stops the consumer once its current batch is done; the final counts, and Lambda's.
    async fn finish(self, tally: &Mutex<Tally>) -> Result<(Tally, Option<(Invocations, MappingStats)>), LocalError> {
        match self {
            Consumer::Binaries { stats, stop, task } => {
                let _ = stop.send(true);
                task.await.map_err(|_| LocalError::ConsumerPanicked)??;
                let s = stats.lock().map_err(|_| LocalError::ConsumerPanicked)?.clone();
                // Every process has stopped and every log line is read: the tally is complete.
                let t = tally.lock().map_err(|_| LocalError::ConsumerPanicked)?.clone();
                Ok((t, Some((functions::invocations(&s), s))))
            }
            Consumer::InProcess(p) => Ok((p.finish().await?, None)),
        }
    }
}

/// DynamoDB's provisioned throughput between the functions and the endpoint, said as a note:
/// the meter, the table's name and its provisioned WCU.
pub(crate) async fn metered(
    env: &Environment,
    time_scale: f64,
    burst: Burst,
    events: &mut (dyn FnMut(Event) + Send),
) -> Result<(Throughput, String, Option<u32>), LocalError> {
    let app = &env.app;
    let table = env.named(app.table().physical_name(), app.table().construct())?;
    let provisioned = match app.table().billing() {
        Billing::Provisioned { write, .. } => Some(write),
        Billing::OnDemand => None,
    };
    let metered: Vec<Provisioned> =
        provisioned.map(|wcu| Provisioned { table: table.clone(), wcu }).into_iter().collect();
    let meter = Throughput::start(&env.endpoint, &metered, time_scale, burst).await?;
    events(Event::Note(format!(
        "DynamoDB throughput: {table} at {} WCU/s, burst {} at the start (between the functions and the endpoint, at {})",
        provisioned.map_or_else(|| "on-demand".to_owned(), |w| w.to_string()),
        match burst {
            Burst::Empty => "empty",
            Burst::Full => "full",
        },
        meter.endpoint
    )));
    Ok((meter, table, provisioned))
}

/// What the functions are wired to: the deployed stack, the endpoint they call (through the
/// meter), their log sink, the queue, the table and PublishMetrics' budget.
struct Wiring<'a> {
    env: &'a Environment,
    aws: &'a LocalAws,
    sink: &'a LogSink,
    queue_url: &'a str,
    meter: &'a str,
    table: &'a str,
    budget: WriteBudget,
}

/// The functions as this run runs them, chosen once from [`Driver`]: the load test, then the
/// queue's consumer.
enum Functions {
    Binaries {
        load_test: Box<Instance>,
        publish: Arc<lambda_local::FunctionConfig>,
        mapping: lambda_local::sqs::SqsMapping,
    },
    InProcess {
        bus: EventBridgeBus,
        store: Arc<DynamoStore>,
        consume: in_process::ConsumeOptions,
    },
}

impl Functions {
    fn new(options: &RunOptions, w: &Wiring<'_>, events: &mut (dyn FnMut(Event) + Send)) -> Result<Self, LocalError> {
        let (app, env, budget) = (&w.env.app, w.env, w.budget);
        Ok(match &options.driver {
            Driver::Binaries { handlers } => {
                let config = |f: &cfn::constructs::lambda::Function| -> Result<_, LocalError> {
                    functions::function_config(f, handlers, &env.ids, w.aws, &env.target.name, w.sink.clone())
                };
                let mut mapping = functions::sqs_mapping(app.mapping(), w.queue_url, &env.aws, options.time_scale);
                if let Some(reserved) = options.overrides.reserved_concurrency {
                    mapping.reserved_concurrency = reserved;
                }
                if let Some(v) = options.overrides.visibility_timeout_secs {
                    mapping.visibility_timeout = functions::visibility_timeout(v, options.time_scale, app.publish());
                }
                let mut publish = config(app.publish())?;
                publish.environment.insert(order_events::env::WRITE_BUDGET.to_owned(), budget.to_string());
                events(Event::Note(format!(
                    "PublishMetrics ({}): reserved concurrency {}, the mapping starts {} pollers (up to {}), batches of {}, window {:?}, visibility {:?}, write budget {budget} WCU/s",
                    publish.binary.display(),
                    mapping.reserved_concurrency.map_or_else(|| "none".to_owned(), |n| n.to_string()),
                    mapping.initial_batches(),
                    mapping.max_batches(),
                    mapping.batch_size,
                    mapping.batching_window,
                    mapping.visibility_timeout,
                )));
                Functions::Binaries {
                    load_test: Box::new(Instance::new(Arc::new(config(app.load_test())?), 0)),
                    publish: Arc::new(publish),
                    mapping,
                }
            }
            Driver::InProcess => {
                let mut settings = crate::mapping_settings(app.mapping());
                // No Lambda scaling here: one consumer per allowed execution, the mapping's first
                // batches when nothing bounds them.
                if let Some(reserved) = options.overrides.reserved_concurrency {
                    settings.consumers =
                        reserved.unwrap_or(cfn::constructs::lambda::EventSourceMapping::SQS_INITIAL_BATCHES);
                }
                if let Some(v) = options.overrides.visibility_timeout_secs {
                    settings.visibility_timeout_secs = v;
                }
                events(Event::Note(format!(
                    "in-process mode: {} consumer(s), batches of {}, window {:?} (scaled {}x), write budget {budget} WCU/s",
                    settings.consumers, settings.batch_size, settings.batching_window, options.time_scale
                )));
                let client = publish_metrics::client(&env.config.to_builder().endpoint_url(w.meter).build());
                Functions::InProcess {
                    bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&env.config), app.bus().name()),
                    store: Arc::new(DynamoStore::new(client, w.table)),
                    consume: in_process::ConsumeOptions {
                        settings,
                        time_scale: options.time_scale,
                        timeout: options.timeout,
                        budget,
                    },
                }
            }
        })
    }

    /// One load test invocation.
    async fn load_test(&mut self, input: &Input, run_id: &str) -> Result<Report, LocalError> {
        match self {
            Functions::Binaries { load_test, .. } => {
                let mut body =
                    serde_json::json!({"count": input.count, "detailType": input.detail_type, "runId": run_id});
                if let Some(drinks) = &input.drinks {
                    body["drinks"] = serde_json::json!(drinks);
                }
                if let Some(seed) = input.seed {
                    body["seed"] = serde_json::json!(seed);
                }
                if let Some(workshop) = input.workshop_order_ids {
                    body["workshopOrderIds"] = serde_json::json!(workshop);
                }
                let invocation = load_test.invoke(body.to_string()).await?;
                functions::load_test_report(&invocation.outcome)
            }
            Functions::InProcess { bus, .. } => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
                events_load_test::run(bus, input, run_id, RetryPolicy::default(), deadline)
                    .await
                    .map_err(|e| LocalError::LoadTest(format!("failed: {e}")))
            }
        }
    }

    /// Starts consuming the queue (the load test's environment stops first).
    async fn start_drain(self, sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Consumer {
        match self {
            Functions::Binaries { mut load_test, publish, mapping } => {
                load_test.shutdown().await;
                let stats = Arc::new(Mutex::new(MappingStats::default()));
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(lambda_local::sqs::run(sqs.clone(), mapping, publish, stats.clone(), stopped));
                Consumer::Binaries { stats, stop, task }
            }
            Functions::InProcess { store, consume, .. } => {
                Consumer::InProcess(in_process::start(sqs, queue_url, store, &consume))
            }
        }
    }
}

/// Runs the load test once per detail type asked for; what should be counted per metric, and
/// how many events were sent.
async fn load_test(
    orders: &Orders,
    functions: &mut Functions,
    events: &mut (dyn FnMut(Event) + Send),
) -> Result<(BTreeMap<String, u64>, usize), LocalError> {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    // Order IDs unique to this run, so a second run on the same endpoint sends new orders.
    let run_id = format!("local-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()));
    for (detail_type, count) in [
        (DetailType::WaitingCompletion, orders.waiting),
        (DetailType::OrderCompleted, orders.completed),
        (DetailType::OrderCancelled, orders.cancelled),
    ] {
        if count == 0 {
            continue;
        }
        let input = Input {
            count: Some(count),
            detail_type: Some(detail_type),
            drinks: orders.drinks.clone(),
            seed: orders.seed,
            workshop_order_ids: orders.workshop_order_ids.then_some(true),
            ..Default::default()
        };
        let report = functions.load_test(&input, &run_id).await?;
        if report.uncertain > 0 {
            return Err(LocalError::LoadTest(format!(
                "{} events went unanswered by the endpoint (it may or may not have put them), so the counts cannot be checked",
                report.uncertain
            )));
        }
        events(Event::LoadTest { detail_type, sent: report.sent, failed: report.failed });
        sent += report.sent as usize;
        *expected.entry(detail_type.counts().name().to_owned()).or_default() += u64::from(report.sent);
        // Only a waiting order counts its drink (the report names drinks for every type).
        if detail_type == DetailType::WaitingCompletion {
            for (drink, n) in &report.per_drink {
                *expected.entry(drink.clone()).or_default() += u64::from(*n);
            }
        }
    }
    Ok((expected, sent))
}

/// Counters summed per metric over every day. A sort key that is not a metric key stays a row
/// of its own, so it shows as a mismatch.
fn per_metric(counters: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (sk, val) in counters {
        let metric = MetricKey::parse_sort_key(&sk).map_or(sk, |k| k.metric.name().to_owned());
        *out.entry(metric).or_default() += val;
    }
    out
}

/// The orders waiting in the DLQ that the table never counted, per metric: a dead letter whose
/// dedupe record exists was counted (its delete came too late) and is not counted again here.
/// The messages stay in the DLQ (received with a minute's visibility, not deleted).
async fn uncounted_dead_letters(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<BTreeMap<String, u64>, LocalError> {
    use order_events::{DEDUPE_SK, PARTITION_KEY, SORT_KEY};
    let mut seen = BTreeSet::new();
    let mut orders = BTreeSet::new();
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let now = chrono::Utc::now();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(aws("cannot read the dead-letter queue"))?;
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            if !seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                continue;
            }
            // A record that is no order event was never sent by this run: a row of its own.
            let Ok(event) = OrderEvent::from_body(m.body().unwrap_or_default(), now) else {
                *out.entry("(not an order event)".to_owned()).or_default() += 1;
                continue;
            };
            if !orders.insert(event.dedupe.clone()) {
                continue;
            }
            let record = ddb
                .get_item()
                .table_name(table)
                .key(PARTITION_KEY, AttributeValue::S(event.dedupe.partition_key()))
                .key(SORT_KEY, AttributeValue::S(DEDUPE_SK.to_owned()))
                .consistent_read(true)
                .send()
                .await
                .map_err(aws("cannot read a dedupe record"))?;
            if record.item().is_some() {
                continue;
            }
            for key in event.metric_keys() {
                *out.entry(key.metric.name().to_owned()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visibility_timeout_below_the_functions_timeout_is_refused_as_aws_does() {
        let app = metrics_stack::metrics_stack(&Default::default()).unwrap();
        let with = |v| Overrides { visibility_timeout_secs: Some(v), ..Default::default() }.check(&app);
        assert!(with(30).is_ok(), "PublishMetrics' timeout exactly");
        let err = with(29).unwrap_err().to_string();
        assert!(err.contains("--visibility-timeout 29") && err.contains("(30 s)"), "{err}");
        assert!(Overrides::default().check(&app).is_ok());
    }

    fn summary(dead_lettered: u64, counted: u64) -> RunSummary {
        RunSummary {
            stack: "s".into(),
            overrides: Overrides { unpaced: true, reserved_concurrency: Some(None), visibility_timeout_secs: Some(10) }
                .describe(),
            time_scale: 1.0,
            metrics: vec![MetricRow { metric: "TotalSales".into(), sent: 300, counted, dead_lettered }],
            exact: counted + dead_lettered == 300,
            sent: 300,
            drain_secs: 172.4,
            predicted_drain_secs: Some(168.0),
            tally: Tally { counted: counted as usize, ..Default::default() },
            lambda: None,
            table: TableFigures {
                provisioned_wcu: Some(5),
                budget: "unpaced".into(),
                consumed_wcu: 840,
                throttled_requests: 3,
                throttled_wcu: 84,
                most_wcu_in_a_minute: 312,
                provisioned_wcu_per_minute: Some(300),
                largest_write_wcu: 28,
                transactions: 30,
                transaction_items: 420,
                throttled_writes: 3,
            },
            logs: "/l".into(),
            graphs: "/l/graphs.html".into(),
        }
    }

    #[test]
    fn overrides_say_what_the_run_changed() {
        assert!(Overrides::default().describe().is_empty());
        assert_eq!(
            summary(0, 300).overrides,
            [
                "PublishMetrics is not paced (WRITE_BUDGET_WCU_PER_SECOND=unpaced)",
                "PublishMetrics has no reserved concurrency",
                "MetricsQueue's visibility timeout is 10 s"
            ]
        );
        let one = Overrides { reserved_concurrency: Some(Some(1)), ..Default::default() };
        assert_eq!(one.describe(), ["PublishMetrics' reserved concurrency is 1"]);
    }

    #[test]
    fn the_summary_reads_as_a_table_then_the_figures() {
        let text = summary(2, 298).to_string();
        assert!(text.starts_with("metric                    sent   counted       DLQ\nTotalSales                 300       298         2\n"), "{text}");
        assert!(text.contains("what-if: PublishMetrics is not paced"), "{text}");
        assert!(
            text.contains("300 events drained in 2 min 52 s; synth's capacity arithmetic predicts 2 min 48 s"),
            "{text}"
        );
        assert!(text.contains("840 WCU consumed (2.80 per event sent)"), "{text}");
        assert!(
            text.contains("most in any minute 312 (provisioned 300; pacing may add the transaction that starts a minute: 28); 3 requests throttled (84 WCU); PublishMetrics' budget unpaced"),
            "{text}"
        );
        assert!(
            text.ends_with("counts match what was sent: every order counted once or waiting in the DLQ, none twice"),
            "{text}"
        );
        // A count that neither the table nor the DLQ accounts for.
        let text = summary(1, 298).to_string();
        assert!(text.contains("TotalSales                 300       298         1  MISMATCH"), "{text}");
        assert!(text.ends_with("counts DIFFER from what was sent"), "{text}");
        // And as one JSON document.
        let json = serde_json::to_value(summary(0, 300)).unwrap();
        assert_eq!((json["exact"].as_bool(), json["table"]["mostWcuInAMinute"].as_u64()), (Some(true), Some(312)));
    }
}
