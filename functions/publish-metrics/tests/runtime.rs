//! The real PublishMetrics binary (the official `lambda_runtime` client) behind the local
//! Runtime API: its batch response and its log lines, and a missing setting at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_local::{FunctionConfig, Instance, LogLine, Outcome, Stream};

fn config(env: &[(&str, &str)], logs: Arc<Mutex<Vec<LogLine>>>) -> Arc<FunctionConfig> {
    Arc::new(FunctionConfig {
        environment: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        timeout: Duration::from_secs(10),
        memory_mb: 256,
        json_logs: true,
        // Nothing listens there: a DynamoDB call would fail, and none is expected.
        endpoint_url: Some("http://127.0.0.1:9".into()),
        logs: Arc::new(move |l| logs.lock().unwrap().push(l)),
        ..FunctionConfig::new("PublishMetrics", env!("CARGO_BIN_EXE_publish-metrics"))
    })
}

#[tokio::test]
async fn bad_records_are_listed_as_failures_and_the_counts_logged() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f =
        Instance::new(config(&[("TABLE_NAME", "metrics"), ("WRITE_BUDGET_WCU_PER_SECOND", "5")], logs.clone()), 0);
    let event = serde_json::json!({"Records": [
        {"messageId": "m1", "body": "not json", "eventSource": "aws:sqs"},
        {"messageId": "m2", "body": "{\"id\": \"no-envelope\"}", "eventSource": "aws:sqs"},
    ]});
    let invocation = f.invoke(event.to_string()).await.unwrap();
    f.shutdown().await;
    let Outcome::Response(body) = &invocation.outcome else { panic!("{:?}", invocation.outcome) };
    let response: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]})
    );
    let logs = logs.lock().unwrap();
    let mine: Vec<&LogLine> = logs
        .iter()
        .filter(|l| l.stream == Stream::Stdout && l.request_id.as_deref() == Some(invocation.request_id.as_str()))
        .collect();
    // Every line it wrote is JSON (LogFormat JSON), and one is the EMF document.
    let docs: Vec<serde_json::Value> =
        mine.iter().map(|l| serde_json::from_str(&l.line).unwrap_or_else(|e| panic!("{e}: {}", l.line))).collect();
    let emf = docs.iter().find(|d| d.get("_aws").is_some()).expect("an EMF line");
    assert_eq!((emf["BadRecords"].as_u64(), emf["CountedRecords"].as_u64()), (Some(2), Some(0)));
    assert_eq!(emf["FunctionName"], "PublishMetrics", "from AWS_LAMBDA_FUNCTION_NAME");
}

#[tokio::test]
async fn a_missing_or_malformed_setting_stops_the_process_with_the_reason_in_its_logs() {
    for (env, says) in [
        (&[("WRITE_BUDGET_WCU_PER_SECOND", "5")][..], "TABLE_NAME is not set"),
        (&[("TABLE_NAME", "metrics")][..], "WRITE_BUDGET_WCU_PER_SECOND is not set"),
        (
            &[("TABLE_NAME", "metrics"), ("WRITE_BUDGET_WCU_PER_SECOND", "-5")][..],
            "WRITE_BUDGET_WCU_PER_SECOND: write budget \\\"-5\\\" is invalid: give WCU per second",
        ),
    ] {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut f = Instance::new(config(env, logs.clone()), 0);
        let invocation = f.invoke("{\"Records\": []}").await.unwrap();
        assert!(matches!(invocation.outcome, Outcome::Crashed(_)), "{:?}", invocation.outcome);
        let logs = logs.lock().unwrap();
        assert!(logs.iter().any(|l| l.line.contains(says)), "{says} in {logs:#?}");
    }
}
