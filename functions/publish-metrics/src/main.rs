//! PublishMetrics on Lambda: the runtime glue around [`publish_metrics::process`].

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use publish_metrics::{emf, process, DynamoStore, Invocation, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines when the function's LogFormat is JSON (as the stack sets it).
    lambda_runtime::tracing::init_default_subscriber();
    let var = order_events::env::TABLE_NAME;
    let table = std::env::var(var).map_err(|_| format!("{var} is not set: the stack sets it to the metrics table"))?;
    let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "PublishMetrics".to_owned());
    // Built once per container, reused by every invocation.
    let config = publish_metrics::sdk_config().await;
    let store = DynamoStore::new(publish_metrics::client(&config), table);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (store, function_name) = (&store, &function_name);
        async move {
            let invocation = Invocation::from_deadline_ms(event.context.deadline);
            let outcome = process(store, event.payload, RetryPolicy::default(), invocation).await;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            // Its own line on stdout, where CloudWatch Logs extracts the metrics.
            println!("{}", emf::document(&outcome, function_name, now_ms));
            Ok::<SqsBatchResponse, Error>(outcome.response())
        }
    }))
    .await
}
