//! PublishMetrics on Lambda: the runtime glue around [`publish_metrics::process`].

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use order_events::capacity::WriteBudget;
use publish_metrics::{emf, process, DynamoStore, Invocation, Pacer, RetryPolicy, Spacing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines when the function's LogFormat is JSON (as the stack sets it).
    lambda_runtime::tracing::init_default_subscriber();
    let var = order_events::env::TABLE_NAME;
    let table = std::env::var(var).map_err(|_| format!("{var} is not set: the stack sets it to the metrics table"))?;
    let var = order_events::env::WRITE_BUDGET;
    let budget: WriteBudget = std::env::var(var)
        .map_err(|_| {
            format!("{var} is not set: the stack sets it to this instance's share of the table's write capacity")
        })?
        .parse()
        .map_err(|e| format!("{var}: {e}"))?;
    // One bucket per execution environment, shared by its invocations; it starts empty.
    let pacer = Pacer::new(budget);
    let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "PublishMetrics".to_owned());
    // Built once per container, reused by every invocation.
    let config = connection::lambda::sdk_config().await;
    let store = DynamoStore::new(publish_metrics::client(&config), table);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (store, function_name, pacer) = (&store, &function_name, &pacer);
        async move {
            let invocation = Invocation::from_deadline_ms(&event.context.request_id, event.context.deadline);
            let spacing = Spacing { retry: RetryPolicy::default(), pacer };
            let outcome = process(store, event.payload, spacing, invocation).await;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            // Its own line on stdout, where CloudWatch Logs extracts the metrics.
            println!("{}", emf::document(&outcome, function_name, now_ms));
            Ok::<SqsBatchResponse, Error>(outcome.response())
        }
    }))
    .await
}
