//! EventsLoadTest on Lambda: the runtime glue around [`events_load_test::run`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use events_load_test::{run, EventBridgeBus, Input, Report, RetryPolicy};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let var = order_events::env::EVENT_BUS_NAME;
    let bus_name = std::env::var(var).map_err(|_| format!("{var} is not set: the stack sets it to the bus"))?;
    // Built once per container, reused by every invocation.
    let config = events_load_test::sdk_config().await;
    let bus = EventBridgeBus::new(events_load_test::client(&config), bus_name);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Input>| {
        let bus = &bus;
        async move {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(u128::MAX, |d| d.as_millis());
            // A deadline already past leaves no time at all.
            let left = u128::from(event.context.deadline).saturating_sub(now_ms);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
            let request_id = event.context.request_id.clone();
            let report: Report = run(bus, &event.payload, &request_id, RetryPolicy::default(), deadline).await?;
            tracing::info!(sent = report.sent, failed = report.failed, unsent = report.unsent, "load test done");
            Ok::<Report, Error>(report)
        }
    }))
    .await
}
