//! `local`: the whole workshop without an AWS account or Docker, as `local::run` does it: the
//! standalone stack on moto, DynamoDB's provisioned throughput between the functions and moto,
//! EventsLoadTest's and PublishMetrics' real binaries under the template's settings and
//! Lambda's scaling; the counts checked against what was sent, the workshop's graphs written.
//! `local invoke` runs one function once; `local serve` serves the functions behind Lambda's
//! Invoke API (for `aws lambda invoke --endpoint-url` or an SDK client) until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use connection::Connection;
use lambda_local::{LogLine, LogSink};
use local::artifact::Handlers;
use local::environment::{Environment, EnvironmentOptions};
use local::functions;
use local::throughput::Burst;
use local::{Driver, Event, Orders, Overrides, RunOptions};

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
    /// Serve the stack's functions behind Lambda's Invoke API on 127.0.0.1 until Ctrl-C.
    Serve(ServeArgs),
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
    /// `events-load-test`) [default: the deployed arm64 bootstraps from the zips where this
    /// machine can run them, else build them now with cargo].
    #[arg(long, global = true)]
    handlers: Option<PathBuf>,
    /// Build the handlers for this machine even where the deployed arm64 bootstraps could run.
    #[arg(long, global = true, conflicts_with = "handlers")]
    host_build: bool,
}

impl Common {
    fn environment(&self) -> EnvironmentOptions {
        EnvironmentOptions {
            connection: self.connection.clone(),
            moto_server: self.moto_server.clone(),
            lambda_dir: self.lambda_dir.clone(),
        }
    }
}

/// A reserved concurrency: `none`, or a number of concurrent executions.
#[derive(Clone, Copy, Debug)]
struct Reserved(Option<u32>);

fn reserved(text: &str) -> Result<Reserved, String> {
    match text {
        "none" => Ok(Reserved(None)),
        n => n
            .parse()
            .map(|n| Reserved(Some(n)))
            .map_err(|_| format!("{n:?} is neither `none` nor a number of executions")),
    }
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
    /// Send the workshop's original order IDs (1000, 1001, ...), the same on every run: a
    /// second run within the dedupe window counts nothing, every order being a duplicate.
    #[arg(long)]
    workshop_order_ids: bool,
    /// Scale every duration of the run: the batching window, the visibility timeout, the
    /// mapping's scaling and the table's refill (0.1 runs ten times as fast).
    #[arg(long, default_value_t = 1.0, value_parser = time_scale)]
    time_scale: f64,
    /// Give up consuming after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Fast mode: no binaries; the load test and PublishMetrics' logic run in this process.
    #[arg(long)]
    in_process: bool,
    #[command(flatten)]
    logs: LogArgs,
    /// Where the workshop's graphs go, one HTML file [default: <logs>/graphs.html].
    #[arg(long)]
    graphs: Option<PathBuf>,
    /// Print the summary as one JSON document (the progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// The table's burst capacity at the start: `empty` (AWS gives burst on a best-effort
    /// basis; do not plan on it) or `full` (300 s of unused capacity).
    #[arg(long, value_enum, default_value_t = Burst::Empty)]
    burst: Burst,
    /// What-if: PublishMetrics writes as fast as DynamoDB answers, for this run only.
    #[arg(long)]
    unpaced: bool,
    /// What-if: PublishMetrics' reserved concurrency for this run (`none`: the account's pool).
    #[arg(long, value_name = "N|none", value_parser = reserved)]
    reserved_concurrency: Option<Reserved>,
    /// What-if: MetricsQueue's visibility timeout in seconds for this run (scaled like the rest).
    #[arg(long, value_name = "SECS")]
    visibility_timeout: Option<u32>,
}

fn time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a time scale: give a number above 0 and at most 1 (0.1 runs ten times as fast)"
        )),
    }
}

#[derive(clap::Args)]
struct InvokeArgs {
    /// The function: PublishMetrics or EventsLoadTest.
    function: String,
    /// The event: a JSON file, or - for standard input.
    #[arg(long)]
    event: String,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 3001)]
    port: u16,
    #[command(flatten)]
    logs: LogArgs,
    /// The table's burst capacity at the start: `empty` (AWS gives burst on a best-effort
    /// basis; do not plan on it) or `full` (300 s of unused capacity).
    #[arg(long, value_enum, default_value_t = Burst::Empty)]
    burst: Burst,
}

/// Where the functions' logs go, for a run and for `serve`.
#[derive(clap::Args)]
struct LogArgs {
    /// Where the functions' logs go, one JSON Lines file per function [default:
    /// <target>/local-logs].
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Print every log line too, prefixed with the function and request ID.
    #[arg(long)]
    print_logs: bool,
}

impl LogArgs {
    fn dir(&self) -> PathBuf {
        self.logs.clone().unwrap_or_else(|| deploy::assets::default_lambda_dir().with_file_name("local-logs"))
    }

    /// With `--print-logs`, a sink printing each line on stderr.
    fn echo(&self) -> Option<LogSink> {
        self.print_logs.then(|| Arc::new(|line: LogLine| eprintln!("{line}")) as LogSink)
    }
}

/// The run's flags given on the command line, by their long names: the subcommands take none of
/// them (clap accepts them before the subcommand, where they would be silently ignored).
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
    if let Some(subcommand) = matches.subcommand_name() {
        let given = run_flags_given(&matches);
        if !given.is_empty() {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{} cannot be used with `{subcommand}` (they set up a full run)", given.join(", ")),
                )
                .exit();
        }
    }
    cli
}

fn main() -> ExitCode {
    let cli = parse();
    let json = cli.command.is_none() && cli.run.json;
    // On Ctrl-C or SIGTERM the run is dropped, which stops the moto server and the functions'
    // processes it started; `serve` stops its functions and moto and exits 0.
    connection::run_main(
        async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| anyhow!("cannot listen for SIGTERM: {e}"))?;
            let stop = async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => "interrupted",
                    _ = terminate.recv() => "terminated",
                }
            };
            tokio::pin!(stop);
            let work = async {
                match cli.command {
                    Some(Command::Invoke(args)) => invoke(cli.common, args).await.map(Work::Done),
                    Some(Command::Serve(args)) => serve(cli.common, args).await.map(|s| Work::Serving(Box::new(s))),
                    None => run(cli.common, cli.run).await.map(Work::Done),
                }
            };
            let serving = tokio::select! {
                r = work => match r? {
                    Work::Done(ok) => return Ok(ok),
                    Work::Serving(serving) => serving,
                },
                why = &mut stop => return Err(anyhow!(why)),
            };
            println!("{serving}");
            let why = stop.await;
            eprintln!("{why}: stopping the functions and the endpoint");
            serving.stop().await?;
            Ok(true)
        },
        json,
    )
}

/// How a command's work ended: done (and whether it succeeded), or serving until a signal.
enum Work {
    Done(bool),
    Serving(Box<local::serve::Serving>),
}

/// The handlers' binaries: given; the deployed arm64 bootstraps, where this machine runs them
/// (natively or under qemu-user); or a build for this machine, made now. Says which.
fn handlers(common: &Common) -> Result<Handlers> {
    if let Some(dir) = &common.handlers {
        eprintln!("running the handlers in {} (--handlers)", dir.display());
        return Ok(Handlers::runnable(dir.clone()));
    }
    let support = local::artifact::arm64();
    if !common.host_build && !matches!(support, local::artifact::Arm64::Unavailable(_)) {
        let lambda_dir = common.lambda_dir.clone().unwrap_or_else(deploy::assets::default_lambda_dir);
        let into = lambda_dir.with_file_name("local-bootstrap");
        local::artifact::extract_bootstraps(&lambda_dir, &order_events::assets::ALL, &into)?;
        eprintln!("running the deployed arm64 bootstraps from {} {support}", lambda_dir.display());
        return Ok(Handlers { dir: into, launcher: support.launcher() });
    }
    let why = if common.host_build { "--host-build".to_owned() } else { support.to_string() };
    eprintln!("running a build for this machine, not the deployed arm64 bootstrap ({why}); building it (cargo build --bins) ...");
    // The workspace this binary was built from.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Ok(Handlers::runnable(functions::build_handlers(&workspace)?))
}

async fn run(common: Common, args: RunArgs) -> Result<bool> {
    let driver = if args.in_process { Driver::InProcess } else { Driver::Binaries { handlers: handlers(&common)? } };
    let (logs, echo_logs) = (args.logs.dir(), args.logs.echo());
    let options = RunOptions {
        environment: common.environment(),
        driver,
        orders: Orders {
            waiting: args.count,
            completed: args.completed,
            cancelled: args.cancelled,
            drinks: args.drinks,
            seed: args.seed,
            workshop_order_ids: args.workshop_order_ids,
        },
        time_scale: args.time_scale,
        timeout: Duration::from_secs(args.timeout),
        graphs: args.graphs.unwrap_or_else(|| logs.join("graphs.html")),
        logs,
        overrides: Overrides {
            unpaced: args.unpaced,
            reserved_concurrency: args.reserved_concurrency.map(|r| r.0),
            visibility_timeout_secs: args.visibility_timeout,
        },
        burst: args.burst,
        echo_logs,
    };
    let json = args.json;
    let summary = local::run(options, &mut |e: Event| {
        if json {
            eprintln!("{e}")
        } else {
            println!("{e}")
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string(&summary).context("cannot write the summary as JSON")?);
    } else {
        println!("\n{summary}");
    }
    Ok(summary.exact)
}

async fn serve(common: Common, args: ServeArgs) -> Result<local::serve::Serving> {
    let handlers = handlers(&common)?;
    let (logs, echo_logs) = (args.logs.dir(), args.logs.echo());
    let options = local::serve::ServeOptions {
        environment: common.environment(),
        handlers,
        port: args.port,
        burst: args.burst,
        logs,
        echo_logs,
        report: Arc::new(|e| eprintln!("{e}")),
    };
    Ok(local::serve::serve(options, &mut |e: Event| eprintln!("{e}")).await?)
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
    let handlers = handlers(&common)?;
    let env = Environment::prepare(&common.environment(), &mut |n| eprintln!("{n}")).await?;
    let app = &env.app;
    let names: Vec<String> = app.functions().iter().map(|f| f.physical_name().unwrap_or_default().to_owned()).collect();
    let function = app
        .functions()
        .into_iter()
        .find(|f| f.physical_name() == Some(args.function.as_str()))
        .ok_or_else(|| anyhow!("no function {} in the stack (there are: {})", args.function, names.join(", ")))?;
    let sink: LogSink = Arc::new(|line: LogLine| eprintln!("{line}"));
    let config = functions::function_config(function, &handlers, &env.ids, &env.aws, &env.target.name, sink)?;
    let invocation = functions::invoke_once(Arc::new(config), event).await?;
    println!("{}", invocation.outcome);
    Ok(!invocation.outcome.is_error())
}
