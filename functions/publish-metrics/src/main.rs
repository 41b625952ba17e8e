//! PublishMetrics on Lambda: the runtime glue around [`publish_metrics::process`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use publish_metrics::{process, DynamoStore, RetryPolicy};

/// The invocation's deadline as an `Instant`.
fn deadline(event: &LambdaEvent<SqsEvent>) -> Option<Instant> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis();
    let left = u128::from(event.context.deadline).checked_sub(now_ms)?;
    Some(Instant::now() + Duration::from_millis(u64::try_from(left).ok()?))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines when the function's LogFormat is JSON (as the stack sets it).
    lambda_runtime::tracing::init_default_subscriber();
    let table =
        std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set: the stack sets it to the metrics table")?;
    // Built once per container, reused by every invocation.
    let config = aws_config::load_from_env().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let store = &store;
        async move {
            let deadline = deadline(&event);
            let outcome = process(store, event.payload, RetryPolicy::default(), deadline).await;
            Ok::<SqsBatchResponse, Error>(outcome.response())
        }
    }))
    .await
}
