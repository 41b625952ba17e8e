//! EventsLoadTest on Lambda: the runtime glue around [`events_load_test::run`].

use events_load_test::{run, EventBridgeBus, Input, Report, RetryPolicy};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let bus_name =
        std::env::var("EVENT_BUS_NAME").map_err(|_| "EVENT_BUS_NAME is not set: the stack sets it to the bus")?;
    // Built once per container, reused by every invocation.
    let config = aws_config::load_from_env().await;
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), bus_name);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Input>| {
        let bus = &bus;
        async move {
            let report: Report = run(bus, &event.payload, RetryPolicy::default()).await?;
            tracing::info!(sent = report.sent, failed = report.failed, "load test done");
            Ok::<Report, Error>(report)
        }
    }))
    .await
}
