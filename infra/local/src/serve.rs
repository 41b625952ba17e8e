//! `local serve`: the stack's functions behind Lambda's Invoke API on 127.0.0.1
//! (`lambda_local::invoke_api`), so `aws lambda invoke --endpoint-url`, an SDK client or another
//! local component can call the real binaries. The stack is deployed to moto first, as for a
//! run; the functions call moto through DynamoDB's provisioned throughput, each with its
//! reserved concurrency.

use std::path::PathBuf;
use std::sync::Arc;

use lambda_local::invoke_api::{ApiEvent, ApiOptions, InvokeApi, Served};
use lambda_local::{LogLine, LogSink};

use crate::artifact::Handlers;
use crate::environment::{Environment, EnvironmentOptions};
use crate::functions::{self, LocalAws};
use crate::logs::LogFiles;
use crate::run::{metered, Event};
use crate::throughput::{Burst, Throughput};
use crate::LocalError;

/// What `serve` takes.
pub struct ServeOptions {
    pub environment: EnvironmentOptions,
    /// The handlers' binaries and what starts them (see [`crate::artifact`]).
    pub handlers: Handlers,
    /// The Invoke API's port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// The table's burst capacity at the start.
    pub burst: Burst,
    /// Where the functions' logs go, one JSON Lines file per function.
    pub logs: PathBuf,
    /// Also receives every log line.
    pub echo_logs: Option<LogSink>,
    /// Receives what the API does (invocations, throttles, retries).
    pub report: Arc<dyn Fn(ApiEvent) + Send + Sync>,
}

/// One function served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedFunction {
    pub name: String,
    pub arn: String,
    pub reserved_concurrency: Option<u32>,
    pub binary: PathBuf,
}

/// The API serving, until [`Serving::stop`] (or drop).
pub struct Serving {
    /// The Invoke API's endpoint, for `--endpoint-url`.
    pub endpoint: String,
    /// The AWS endpoint the functions call (moto, through the throughput meter).
    pub aws_endpoint: String,
    pub functions: Vec<ServedFunction>,
    pub logs: PathBuf,
    api: InvokeApi,
    files: Arc<LogFiles>,
    _meter: Throughput,
    _env: Environment,
}

impl std::fmt::Display for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "serving Lambda's Invoke API on {}", self.endpoint)?;
        for s in &self.functions {
            let concurrency = s.reserved_concurrency.map_or_else(|| "unreserved".to_owned(), |n| n.to_string());
            writeln!(f, "  {} (reserved concurrency {concurrency}) {}", s.name, s.binary.display())?;
        }
        writeln!(f, "the functions call {} (moto, through DynamoDB's provisioned throughput)", self.aws_endpoint)?;
        writeln!(f, "logs: {}", self.logs.display())?;
        writeln!(
            f,
            "try: aws lambda invoke --endpoint-url {} --function-name NAME --payload fileb://event.json --log-type Tail out.json",
            self.endpoint
        )?;
        write!(
            f,
            "(the SQS mapping does not run here: events the functions put on the bus wait in the queue; `local` runs the whole pipeline)"
        )
    }
}

impl Serving {
    /// Stops the API and the functions' processes; flushes the logs.
    pub async fn stop(self) -> Result<(), LocalError> {
        self.api.shutdown().await;
        self.files.finish()
    }
}

/// Deploys the stack to the endpoint and serves its functions.
pub async fn serve(options: ServeOptions, events: &mut (dyn FnMut(Event) + Send)) -> Result<Serving, LocalError> {
    let env = Environment::prepare(&options.environment, &mut |n| events(Event::Note(n))).await?;
    let (meter, _, _) = metered(&env, 1.0, options.burst, events).await?;
    let aws = LocalAws { endpoint_url: meter.endpoint.clone(), ..env.aws.clone() };
    let files = Arc::new(LogFiles::new(options.logs.clone())?);
    let sink: LogSink = {
        let (files, echo) = (files.clone(), options.echo_logs.clone());
        Arc::new(move |line: LogLine| {
            if let Some(echo) = &echo {
                echo(line.clone());
            }
            files.write(&line);
        })
    };
    let mut served = Vec::new();
    let mut listed = Vec::new();
    for f in env.app.functions() {
        let config = functions::function_config(f, &options.handlers, &env.ids, &aws, &env.target.name, sink.clone())?;
        listed.push(ServedFunction {
            name: config.name.clone(),
            arn: config.arn(),
            reserved_concurrency: f.reserved_concurrency(),
            binary: config.binary.clone(),
        });
        served.push(Served { config: Arc::new(config), reserved_concurrency: f.reserved_concurrency() });
    }
    let api_options = ApiOptions { port: options.port, report: options.report.clone(), ..ApiOptions::default() };
    let api = InvokeApi::start(served, api_options).await?;
    Ok(Serving {
        endpoint: api.endpoint(),
        aws_endpoint: env.endpoint.clone(),
        functions: listed,
        logs: options.logs,
        api,
        files,
        _meter: meter,
        _env: env,
    })
}
