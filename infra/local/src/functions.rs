//! The stack's functions as `lambda-local` runs them: each function's configuration from the
//! stack's handles (environment resolved against the deployed stack, timeout, memory), its
//! bootstrap built for this machine, the SQS mapping from the template with AWS's scaling, and
//! what PublishMetrics' EMF lines say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cfn::constructs::lambda::{Code, EventSourceMapping, Function};
use cfn::template::{Expr, Pseudo, ResourceProperties};
use lambda_local::sqs::{MappingStats, Scaling, SqsMapping};
use lambda_local::{Credentials, FunctionConfig, Instance, LogLine, LogSink, Outcome};

use super::{mapping_settings, Invocations, LocalError, Tally};
use crate::artifact::Handlers;

/// The local AWS the functions call: endpoint, region, account and credentials.
#[derive(Clone, Debug)]
pub struct LocalAws {
    pub endpoint_url: String,
    pub region: String,
    pub account_id: String,
    pub credentials: Credentials,
}

pub use deploy::cloudformation::Deployed;

/// Fills a physical ID the endpoint left empty with the name the stack's handle declares (moto
/// does so for an event bus; AWS's physical ID of a bus is its name).
pub fn fill_missing(ids: &mut BTreeMap<String, Deployed>, id: &cfn::template::LogicalId, declared: &str) {
    if let Some(r) = ids.get_mut(id.as_str()) {
        if r.physical_id.is_empty() {
            r.physical_id = declared.to_owned();
        }
    }
}

/// `Fn::GetAtt` of the attributes that follow from a resource's physical ID by AWS's documented
/// formats; anything else is refused by name.
fn attribute(id: &str, r: &Deployed, attr: &str, aws: &LocalAws) -> Result<String, LocalError> {
    let (region, account, name) = (&aws.region, &aws.account_id, &r.physical_id);
    let last = name.rsplit(['/', ':']).next().unwrap_or(name);
    const BUS: &str = <cfn::constructs::events::EventBusProperties as ResourceProperties>::TYPE;
    const TABLE: &str = cfn::constructs::dynamodb::Table::TYPE;
    const QUEUE: &str = cfn::constructs::sqs::Queue::TYPE;
    Ok(match (r.resource_type.as_str(), attr) {
        (BUS, "Name") => last.to_owned(),
        (BUS, "Arn") => format!("arn:aws:events:{region}:{account}:event-bus/{last}"),
        (TABLE, "Arn") => format!("arn:aws:dynamodb:{region}:{account}:table/{name}"),
        (QUEUE, "QueueName") => last.to_owned(),
        (QUEUE, "QueueUrl") => name.clone(),
        (QUEUE, "Arn") => queue_arn(aws, name),
        (t, a) => return Err(LocalError::Unresolved(format!("Fn::GetAtt {id}.{a} ({t}) is not resolved locally"))),
    })
}

/// A queue's ARN from its URL (or name), in the format AWS documents.
fn queue_arn(aws: &LocalAws, url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or(url);
    format!("arn:aws:sqs:{}:{}:{name}", aws.region, aws.account_id)
}

/// A template value as the deployed stack resolves it. Only what a function environment of
/// this app can hold: literals, `Ref` of a resource, the attributes [`attribute`] knows, pseudo
/// parameters, `Fn::Join` of those.
pub fn resolve(
    expr: &Expr,
    ids: &BTreeMap<String, Deployed>,
    aws: &LocalAws,
    stack: &str,
) -> Result<String, LocalError> {
    let resource = |id: &cfn::template::LogicalId| {
        ids.get(id.as_str()).ok_or_else(|| LocalError::Unresolved(format!("{id}: stack {stack} has no such resource")))
    };
    Ok(match expr {
        Expr::Literal(s) => s.clone(),
        Expr::Ref(id) => resource(id)?.physical_id.clone(),
        Expr::GetAtt(id, attr) => attribute(id.as_str(), resource(id)?, attr, aws)?,
        Expr::Pseudo(Pseudo::Region) => aws.region.clone(),
        Expr::Pseudo(Pseudo::AccountId) => aws.account_id.clone(),
        Expr::Pseudo(Pseudo::Partition) => "aws".to_owned(),
        Expr::Pseudo(Pseudo::UrlSuffix) => "amazonaws.com".to_owned(),
        Expr::Pseudo(Pseudo::StackName) => stack.to_owned(),
        Expr::Join(separator, parts) => {
            parts.iter().map(|p| resolve(p, ids, aws, stack)).collect::<Result<Vec<_>, LocalError>>()?.join(separator)
        }
        other => {
            return Err(LocalError::Unresolved(format!(
            "{other:?} is not resolved locally (only literals, Ref, known attributes, pseudo parameters and Fn::Join)"
        )))
        }
    })
}

/// The binary cargo builds for a function's asset (`target/<profile>/<name>` on this machine).
pub fn binary_of(function: &Function, handlers: &Path) -> Result<PathBuf, LocalError> {
    match function.code() {
        Code::Asset { name } => Ok(handlers.join(name)),
        Code::S3 { .. } => Err(LocalError::NotBuiltHere(function.construct().to_string())),
    }
}

/// The function as the deployed template configures it, to run its binary among `handlers`.
pub fn function_config(
    function: &Function,
    handlers: &Handlers,
    ids: &BTreeMap<String, Deployed>,
    aws: &LocalAws,
    stack: &str,
    logs: LogSink,
) -> Result<FunctionConfig, LocalError> {
    let name = function.physical_name().map_or_else(|| function.construct().id.to_string(), str::to_owned);
    let environment = function
        .environment()
        .iter()
        .map(|(k, v)| {
            let why = |e: LocalError| LocalError::Environment {
                function: name.clone(),
                variable: k.clone(),
                why: e.to_string(),
            };
            Ok((k.clone(), resolve(v, ids, aws, stack).map_err(why)?))
        })
        .collect::<Result<BTreeMap<_, _>, LocalError>>()?;
    Ok(FunctionConfig {
        binary: binary_of(function, &handlers.dir)?,
        launcher: handlers.launcher.clone(),
        name,
        environment,
        timeout: Duration::from_secs(u64::from(function.timeout_secs())),
        memory_mb: function.memory_mb(),
        region: aws.region.clone(),
        account_id: aws.account_id.clone(),
        // Every function of the construct library logs JSON (`LoggingConfig.LogFormat`).
        json_logs: true,
        credentials: aws.credentials.clone(),
        endpoint_url: Some(aws.endpoint_url.clone()),
        logs,
    })
}

/// A queue's visibility timeout of `secs` (AWS's clock) for a run at `time_scale`, never below
/// `consumer`'s timeout, which runs unscaled.
pub fn visibility_timeout(secs: u32, time_scale: f64, consumer: &Function) -> Duration {
    Duration::from_secs(u64::from(secs))
        .mul_f64(time_scale)
        .max(Duration::from_secs(u64::from(consumer.timeout_secs())))
}

/// The template's event source mapping for `queue_url`; `time_scale` shortens the window and
/// the visibility timeout for a demo (1.0 keeps the queue's own timeout, as Lambda does), but
/// never below the function's timeout, which runs unscaled: AWS refuses a mapping whose queue
/// lets a message reappear while the function may still work on it.
pub fn sqs_mapping(mapping: &EventSourceMapping, queue_url: &str, aws: &LocalAws, time_scale: f64) -> SqsMapping {
    let settings = mapping_settings(mapping);
    SqsMapping {
        queue_url: queue_url.to_owned(),
        queue_arn: queue_arn(aws, queue_url),
        region: aws.region.clone(),
        batch_size: settings.batch_size,
        batching_window: settings.batching_window.mul_f64(time_scale),
        scaling: Scaling {
            initial: EventSourceMapping::SQS_INITIAL_BATCHES,
            per_minute: EventSourceMapping::SQS_SCALE_UP_PER_MINUTE,
            max: EventSourceMapping::SQS_MAX_BATCHES,
        },
        max_concurrency: mapping.max_concurrency(),
        reserved_concurrency: mapping.function().reserved_concurrency(),
        visibility_timeout: visibility_timeout(settings.visibility_timeout_secs, time_scale, mapping.function()),
        report_batch_item_failures: mapping.reports_batch_item_failures(),
        enabled: mapping.enabled(),
        time_scale,
    }
}

/// Adds one PublishMetrics EMF line (its per-invocation counts) to `tally`; other lines are
/// left alone. This is what CloudWatch Logs would extract.
pub fn add_emf(line: &LogLine, tally: &mut Tally) {
    use order_events::emf::{
        BAD, COUNTED, DUPLICATES, FAILED, PACING_WAIT_MS, THROTTLED_WRITES, TRANSACTIONS, TRANSACTION_ITEMS,
        WRITE_CAPACITY_UNITS,
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line.line) else { return };
    if doc.get("_aws").is_none() {
        return;
    }
    let n = |k: &str| doc.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    tally.batches += 1;
    tally.counted += n(COUNTED) as usize;
    tally.duplicates += n(DUPLICATES) as usize;
    tally.bad += n(BAD) as usize;
    tally.failed += n(FAILED) as usize;
    tally.transactions += n(TRANSACTIONS) as usize;
    tally.transaction_items += n(TRANSACTION_ITEMS) as usize;
    tally.wcu += n(WRITE_CAPACITY_UNITS);
    tally.throttled_writes += n(THROTTLED_WRITES);
    tally.pacing_wait_ms += n(PACING_WAIT_MS);
}

/// One invocation of a function, with its logs: what `local invoke` prints.
pub async fn invoke_once(
    function: Arc<FunctionConfig>,
    payload: Vec<u8>,
) -> Result<lambda_local::Invocation, LocalError> {
    let mut instance = Instance::new(function, 0);
    let result = instance.invoke(payload).await;
    instance.shutdown().await;
    Ok(result?)
}

/// The load test's report from its response, or why there is none.
pub fn load_test_report(outcome: &Outcome) -> Result<events_load_test::Report, LocalError> {
    match outcome {
        Outcome::Response(body) => serde_json::from_slice(body)
            .map_err(|e| LocalError::LoadTest(format!("answered {} ({e})", String::from_utf8_lossy(body)))),
        other => Err(LocalError::LoadTest(format!("failed: {other}"))),
    }
}

/// Builds the handlers for this machine (debug, the same sources and features as the zips) and
/// returns the directory holding their binaries.
pub fn build_handlers(workspace: &Path) -> Result<PathBuf, LocalError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(workspace).args(["build", "--bins", "--message-format=json-render-diagnostics"]);
    for name in order_events::assets::ALL {
        command.args(["-p", name]);
    }
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| LocalError::Build(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(LocalError::Build(format!("cargo {}", out.status)));
    }
    // cargo names every executable it built; the handlers share one directory.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("executable").and_then(|e| e.as_str()).map(PathBuf::from))
        .find_map(|exe| exe.parent().map(Path::to_path_buf))
        .ok_or_else(|| LocalError::Build("cargo built no handler binary".to_owned()))
}

/// Invocation counts from the mapping's stats.
pub fn invocations(stats: &MappingStats) -> Invocations {
    Invocations {
        invocations: stats.invocations,
        errors: stats.errors,
        timeouts: stats.timeouts,
        throttles: stats.throttles,
        pollers: stats.pollers,
        max_receive_count: stats.max_receive_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws() -> LocalAws {
        LocalAws {
            endpoint_url: "http://127.0.0.1:5000".into(),
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
            credentials: Credentials::default(),
        }
    }

    #[test]
    fn the_environment_resolves_against_the_deployed_stack() {
        let app = metrics_stack::metrics_stack(&metrics_stack::MetricsStackProps::standalone()).unwrap();
        let ids: BTreeMap<String, Deployed> = [
            ("MetricsTable", "AWS::DynamoDB::Table", "serverlesspresso-metrics-table"),
            // moto leaves a bus's physical ID empty; the handle's name fills it.
            ("EventBus", "AWS::Events::EventBus", ""),
        ]
        .into_iter()
        .map(|(k, t, v)| (k.to_owned(), Deployed { resource_type: t.to_owned(), physical_id: v.to_owned() }))
        .collect();
        let mut ids = ids;
        fill_missing(&mut ids, &app.bus().construct().unwrap().id, app.bus().name());
        let sink: LogSink = Arc::new(|_| {});
        let dir = Path::new("/handlers");
        let handlers = Handlers::runnable(dir.to_owned());
        let publish = app.publish();
        let config = function_config(publish, &handlers, &ids, &aws(), "s", sink.clone()).unwrap();
        assert_eq!(config.environment[order_events::env::TABLE_NAME], "serverlesspresso-metrics-table");
        assert_eq!(config.binary, dir.join(order_events::assets::PUBLISH_METRICS));
        assert_eq!(config.launcher, None);
        assert_eq!((config.timeout, config.memory_mb), (Duration::from_secs(30), 256));
        assert_eq!(config.name, "PublishMetrics");
        let load_test = app.load_test();
        let config = function_config(load_test, &handlers, &ids, &aws(), "s", sink.clone()).unwrap();
        assert_eq!(config.environment[order_events::env::EVENT_BUS_NAME], "Serverlesspresso");

        let missing = function_config(publish, &handlers, &BTreeMap::new(), &aws(), "s", sink).unwrap_err();
        let text = format!("{missing:#}");
        assert!(text.contains("PublishMetrics's TABLE_NAME") && text.contains("MetricsTable"), "{text}");
    }

    #[test]
    fn values_the_local_run_cannot_resolve_are_named() {
        let ids = BTreeMap::new();
        let id = cfn::template::LogicalId::new("Queue").unwrap();
        let err = resolve(&Expr::get_att(&id, "Arn"), &ids, &aws(), "s").unwrap_err().to_string();
        assert!(err.contains("Queue: stack s has no such resource"), "{err}");
        let queue = Deployed {
            resource_type: "AWS::SQS::Queue".into(),
            physical_id: "http://127.0.0.1:5000/123456789012/MetricsQueue".into(),
        };
        let ids = BTreeMap::from([("Queue".to_owned(), queue)]);
        let arn = resolve(&Expr::get_att(&id, "Arn"), &ids, &aws(), "s").unwrap();
        assert_eq!(arn, "arn:aws:sqs:eu-west-1:123456789012:MetricsQueue");
        let err = resolve(&Expr::get_att(&id, "Nope"), &ids, &aws(), "s").unwrap_err().to_string();
        assert!(err.contains("Fn::GetAtt Queue.Nope (AWS::SQS::Queue) is not resolved locally"), "{err}");
        let join = Expr::Join("-".into(), vec![Expr::lit("a"), Expr::Pseudo(Pseudo::Region)]);
        assert_eq!(resolve(&join, &ids, &aws(), "s").unwrap(), "a-eu-west-1");
    }

    #[test]
    fn the_mapping_comes_from_the_template_and_scales_for_a_demo() {
        let app = metrics_stack::metrics_stack(&Default::default()).unwrap();
        let url = "http://127.0.0.1:5000/123456789012/MetricsQueue";
        let m = sqs_mapping(app.mapping(), url, &aws(), 1.0);
        assert_eq!(m.queue_arn, "arn:aws:sqs:eu-west-1:123456789012:MetricsQueue");
        assert_eq!((m.batch_size, m.batching_window, m.reserved_concurrency), (10, Duration::from_secs(30), Some(1)));
        assert_eq!(m.visibility_timeout, Duration::from_secs(210), "the queue's own");
        assert_eq!((m.initial_batches(), m.max_batches()), (5, 1000), "AWS's scaling, not the reserved concurrency");
        assert!(m.report_batch_item_failures);
        let fast = sqs_mapping(app.mapping(), url, &aws(), 0.1);
        assert_eq!(fast.batching_window, Duration::from_secs(3));
        // 210 s x 0.1 = 21 s would be below PublishMetrics' own (unscaled) 30 s timeout.
        assert_eq!(fast.visibility_timeout, Duration::from_secs(30));
        let gentle = sqs_mapping(app.mapping(), url, &aws(), 0.5);
        assert_eq!(gentle.visibility_timeout, Duration::from_secs(105));
    }

    #[test]
    fn a_load_test_answer_that_is_not_a_report_is_an_error_saying_what_came() {
        let report = load_test_report(&Outcome::Response(
            r#"{"sent":3,"failed":0,"unsent":0,"perDrink":{"Latte":3},"putEventsCalls":1,"retries":0}"#.into(),
        ));
        assert_eq!(report.unwrap().sent, 3);
        for (outcome, says) in [
            (Outcome::Response("not json".into()), "answered not json"),
            (Outcome::Response(r#"{"sent":"many"}"#.into()), "answered"),
            (Outcome::Timeout(Duration::from_secs(120)), "Task timed out after 120.00 seconds"),
        ] {
            let err = load_test_report(&outcome).unwrap_err().to_string();
            assert!(err.starts_with("EventsLoadTest ") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn emf_lines_feed_the_tally_and_nothing_else_does() {
        let line = |l: &str| LogLine {
            function: "PublishMetrics".into(),
            request_id: None,
            stream: lambda_local::Stream::Stdout,
            line: l.into(),
        };
        let mut t = Tally::default();
        add_emf(&line(r#"{"level":"INFO","fields":{"message":"hi"}}"#), &mut t);
        add_emf(&line("not json"), &mut t);
        assert_eq!(t, Tally::default());
        let emf = r#"{"_aws":{},"CountedRecords":8,"DuplicateRecords":1,"BadRecords":1,"FailedRecords":2,"Transactions":1,"TransactionItems":12,"WriteCapacityUnits":24,"ThrottledWrites":3,"PacingWaitMs":500}"#;
        add_emf(&line(emf), &mut t);
        add_emf(&line(emf), &mut t);
        let want = Tally {
            batches: 2,
            counted: 16,
            duplicates: 2,
            bad: 2,
            failed: 4,
            transactions: 2,
            transaction_items: 24,
            wcu: 48,
            throttled_writes: 6,
            pacing_wait_ms: 1000,
        };
        assert_eq!(t, want);
    }
}
