//! EventsLoadTest on Lambda: the runtime glue around [`events_load_test::run`].

use std::time::SystemTime;

use events_load_test::{run, EventBridgeBus, Input, Report, RetryPolicy};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let var = order_events::env::EVENT_BUS_NAME;
    let bus_name = std::env::var(var).map_err(|_| format!("{var} is not set: the stack sets it to the bus"))?;
    // Built once per container, reused by every invocation.
    let config = connection::lambda::sdk_config().await;
    let bus = EventBridgeBus::new(events_load_test::client(&config), bus_name);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Input>| {
        let bus = &bus;
        async move {
            // A deadline already past leaves no time at all.
            let left = connection::lambda::time_left(event.context.deadline, SystemTime::now());
            let deadline = tokio::time::Instant::now() + left;
            let request_id = event.context.request_id.clone();
            let report: Report = run(bus, &event.payload, &request_id, RetryPolicy::default(), deadline).await?;
            tracing::info!(sent = report.sent, failed = report.failed, unsent = report.unsent, "load test done");
            Ok::<Report, Error>(report)
        }
    }))
    .await
}
