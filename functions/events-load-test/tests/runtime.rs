//! The real EventsLoadTest binary (the official `lambda_runtime` client) behind the local
//! Runtime API: input it refuses comes back as a function error through the Runtime API's
//! error path, and a missing bus name stops it at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_local::{FunctionConfig, Instance, LogLine, Outcome};

fn config(env: &[(&str, &str)], logs: Arc<Mutex<Vec<LogLine>>>) -> Arc<FunctionConfig> {
    Arc::new(FunctionConfig {
        environment: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        timeout: Duration::from_secs(10),
        json_logs: true,
        endpoint_url: Some("http://127.0.0.1:9".into()),
        logs: Arc::new(move |l| logs.lock().unwrap().push(l)),
        ..FunctionConfig::new("EventsLoadTest", env!("CARGO_BIN_EXE_events-load-test"))
    })
}

#[tokio::test]
async fn refused_input_is_a_function_error_and_the_process_stays() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[("EVENT_BUS_NAME", "Serverlesspresso")], logs), 0);
    let first = f.invoke(r#"{"count": 0}"#).await.unwrap();
    match &first.outcome {
        Outcome::FunctionError(e) => assert!(e.error_message.contains("count = 0 is invalid"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    let second = f.invoke(r#"{"count": 10001}"#).await.unwrap();
    assert!(matches!(&second.outcome, Outcome::FunctionError(e) if e.error_message.contains("10001")));
    assert!(!second.cold_start, "an error the runtime reports keeps the environment");
    f.shutdown().await;
}

#[tokio::test]
async fn a_missing_bus_name_stops_the_process_with_the_reason_in_its_logs() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[], logs.clone()), 0);
    let invocation = f.invoke("{}").await.unwrap();
    assert!(matches!(invocation.outcome, Outcome::Crashed(_)), "{:?}", invocation.outcome);
    assert!(logs.lock().unwrap().iter().any(|l| l.line.contains("EVENT_BUS_NAME is not set")));
}
