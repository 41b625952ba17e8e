//! The execution environment end to end with a stand-in bootstrap (`examples/stand_in.rs`, a
//! runtime written with plain HTTP): what the function sees, and how each way of ending an
//! invocation is reported — response, error, crash, timeout, init error, oversized response.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lambda_local::{Credentials, FunctionConfig, Instance, LogLine, Outcome, Stream};

fn stand_in() -> std::path::PathBuf {
    test_support::profile_dir().join("examples/stand_in")
}

fn config(env: &[(&str, &str)], timeout: Duration, logs: Arc<Mutex<Vec<LogLine>>>) -> Arc<FunctionConfig> {
    Arc::new(FunctionConfig {
        environment: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        timeout,
        region: "eu-west-1".into(),
        json_logs: false,
        credentials: Credentials { access_key_id: "AK".into(), secret_access_key: "SK".into(), session_token: None },
        endpoint_url: Some("http://127.0.0.1:9".into()),
        logs: Arc::new(move |l| logs.lock().unwrap().push(l)),
        ..FunctionConfig::new("StandIn", stand_in())
    })
}

fn sqs(bodies: &[&str]) -> Bytes {
    let records: Vec<_> =
        bodies.iter().enumerate().map(|(i, b)| serde_json::json!({"messageId": format!("m{i}"), "body": b})).collect();
    Bytes::from(serde_json::json!({ "Records": records }).to_string())
}

fn json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response(b) => serde_json::from_slice(b).unwrap(),
        other => panic!("not a response: {other:?}"),
    }
}

#[tokio::test]
async fn the_function_sees_lambdas_headers_and_environment_and_stays_warm() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[("TABLE_NAME", "metrics")], Duration::from_secs(5), logs.clone()), 0);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let first = f.invoke(&br#"{"hello":"world"}"#[..]).await.unwrap();
    assert!(first.cold_start);
    let echo = json(&first.outcome);
    assert_eq!(echo["event"], serde_json::json!({"hello": "world"}));
    assert_eq!(echo["requestId"], first.request_id.as_str());
    let deadline: u64 = echo["deadlineMs"].as_str().unwrap().parse().unwrap();
    assert!(deadline >= before + 5000 && deadline <= before + 6000, "{deadline} vs {before}");
    assert_eq!(echo["functionArn"], "arn:aws:lambda:eu-west-1:123456789012:function:StandIn");
    assert!(echo["traceId"].as_str().unwrap().starts_with("Root=1-"));
    let env = &echo["env"];
    assert_eq!(env["TABLE_NAME"], "metrics");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "StandIn");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "AK");
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:9");
    assert!(env.get("HOME").is_none(), "the caller's environment does not leak in");

    let second = f.invoke(&b"{}"[..]).await.unwrap();
    assert!(!second.cold_start, "the process is reused");
    assert_ne!(second.request_id, first.request_id);
    f.shutdown().await;

    let logs = logs.lock().unwrap();
    let started: Vec<&LogLine> = logs.iter().filter(|l| l.line.starts_with("stand-in started")).collect();
    assert_eq!(started.len(), 1, "one process for both invocations");
    assert_eq!(started[0].request_id, None, "written during init");
    assert!(logs.iter().any(|l| l.stream == Stream::Platform
        && l.line.starts_with(&format!("REPORT RequestId: {}", first.request_id))
        && l.line.contains("Init Duration")));
    assert!(logs.iter().any(|l| l.stream == Stream::Stdout
        && l.request_id.as_deref() == Some(second.request_id.as_str())
        && l.line == format!("echo {}", second.request_id)));
    assert!(logs.iter().all(|l| l.function == "StandIn"));
}

#[tokio::test]
async fn errors_keep_the_process_crashes_and_timeouts_restart_it() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[], Duration::from_secs(2), logs.clone()), 0);

    let error = f.invoke(sqs(&["ok", "error"])).await.unwrap();
    match &error.outcome {
        Outcome::FunctionError(e) => {
            assert_eq!((e.error_type.as_str(), e.error_message.as_str()), ("StandIn.Error", "failed on purpose"))
        }
        other => panic!("{other:?}"),
    }
    let after_error = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(!after_error.cold_start, "a reported error keeps the environment");

    let crash = f.invoke(sqs(&["crash"])).await.unwrap();
    assert!(matches!(&crash.outcome, Outcome::Crashed(why) if why.contains('3')), "{:?}", crash.outcome);
    let after_crash = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(after_crash.cold_start, "a crash resets the environment");
    assert_eq!(json(&after_crash.outcome), serde_json::json!({"batchItemFailures": []}));

    let slow = f.invoke(sqs(&["sleep"])).await.unwrap();
    assert_eq!(slow.outcome, Outcome::Timeout(Duration::from_secs(2)));
    assert!(slow.duration >= Duration::from_secs(2) && slow.duration < Duration::from_secs(4), "{:?}", slow.duration);
    let after_timeout = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(after_timeout.cold_start, "a timeout kills the process; the next invocation starts a new one");

    let big = f.invoke(sqs(&["big"])).await.unwrap();
    assert_eq!(big.outcome, Outcome::ResponseTooLarge);
    f.shutdown().await;

    let logs = logs.lock().unwrap();
    assert!(logs
        .iter()
        .any(|l| l.line == "Task timed out after 2.00 seconds"
            && l.request_id.as_deref() == Some(slow.request_id.as_str())));
    assert!(logs.iter().any(|l| l.stream == Stream::Stderr && l.line == "crashing on purpose"));
    assert_eq!(logs.iter().filter(|l| l.line.starts_with("stand-in started")).count(), 3);
}

/// A runtime holding more than its `MemorySize` is stopped as Lambda stops it, reported as
/// `Runtime.OutOfMemory` with the whole memory used, and the next invocation starts afresh;
/// the same work under a larger `MemorySize` succeeds.
#[tokio::test]
async fn a_runtime_over_its_memory_size_is_killed_and_reported_out_of_memory() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let small =
        Arc::new(FunctionConfig { memory_mb: 128, ..(*config(&[], Duration::from_secs(5), logs.clone())).clone() });
    let mut f = Instance::new(small, 0);
    let hog = f.invoke(sqs(&["hog"])).await.unwrap();
    assert!(matches!(hog.outcome, Outcome::OutOfMemory { used_mb } if used_mb > 128), "{:?}", hog.outcome);
    assert!(hog.duration < Duration::from_millis(500), "stopped while it held the memory: {:?}", hog.duration);
    let after = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(after.cold_start, "the environment was reset");
    assert_eq!(json(&after.outcome), serde_json::json!({"batchItemFailures": []}));
    f.shutdown().await;
    let report = logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.line.starts_with(&format!("REPORT RequestId: {}", hog.request_id)))
        .map(|l| l.line.clone())
        .expect("a REPORT line");
    assert!(report.contains("Memory Size: 128 MB Max Memory Used: 128 MB"), "{report}");
    assert!(report.ends_with("Status: error Error Type: Runtime.OutOfMemory"), "{report}");

    let large = Arc::new(FunctionConfig { memory_mb: 512, ..(*config(&[], Duration::from_secs(5), logs)).clone() });
    let mut f = Instance::new(large, 0);
    let fits = f.invoke(sqs(&["hog"])).await.unwrap();
    assert_eq!(json(&fits.outcome), serde_json::json!({"batchItemFailures": []}), "200 MB fits in 512 MB");
    f.shutdown().await;
}

/// A timeout resets the environment even when the runtime started a child that holds its
/// stdout (the reset used to wait for that pipe forever); a runtime that exits while idle
/// makes the next invocation a cold start, not a crash.
#[tokio::test]
async fn a_reset_kills_what_the_runtime_started_and_an_idle_exit_is_a_cold_start() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[], Duration::from_secs(1), logs.clone()), 0);
    let orphan = tokio::time::timeout(Duration::from_secs(10), f.invoke(sqs(&["orphan"])))
        .await
        .expect("the timeout ends the invocation")
        .unwrap();
    assert_eq!(orphan.outcome, Outcome::Timeout(Duration::from_secs(1)));
    let next = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(next.cold_start);

    let leaving = f.invoke(sqs(&["exit-after"])).await.unwrap();
    assert_eq!(json(&leaving.outcome), serde_json::json!({"batchItemFailures": []}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = f.invoke(sqs(&["ok"])).await.unwrap();
    assert!(after.cold_start, "a new process, as Lambda starts one");
    assert_eq!(json(&after.outcome), serde_json::json!({"batchItemFailures": []}));
    f.shutdown().await;
}

#[tokio::test]
async fn init_failures_are_reported_and_retried_with_a_new_process() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Instance::new(config(&[("STAND_IN_INIT", "error")], Duration::from_secs(5), logs.clone()), 0);
    for _ in 0..2 {
        let init = f.invoke(&b"{}"[..]).await.unwrap();
        assert!(init.cold_start);
        match &init.outcome {
            Outcome::InitError(e) => assert_eq!(e.error_type, "Runtime.ConfigError"),
            other => panic!("{other:?}"),
        }
    }
    let mut f = Instance::new(config(&[("STAND_IN_INIT", "exit")], Duration::from_secs(5), logs.clone()), 0);
    let exit = f.invoke(&b"{}"[..]).await.unwrap();
    assert!(matches!(&exit.outcome, Outcome::Crashed(why) if why.contains('2')), "{:?}", exit.outcome);
    let logs = logs.lock().unwrap();
    let reports = logs.iter().filter(|l| l.stream == Stream::Platform && l.line.starts_with("REPORT"));
    assert_eq!(reports.filter(|l| l.line.ends_with("Error Type: Runtime.InitError")).count(), 2);
}

/// Init is a phase of its own: a 1.5 s init and 1 s of work fit a 2 s timeout (the deadline
/// starts at the first `next`), REPORT says Init Duration and Billed Duration apart, and
/// INIT_START comes first; with `LogFormat: JSON` the platform lines are Lambda's JSON records.
#[tokio::test]
async fn init_is_its_own_phase_and_platform_lines_follow_the_log_format() {
    for json_logs in [false, true] {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut config = (*config(&[("STAND_IN_INIT", "sleep-ms=1500")], Duration::from_secs(2), logs.clone())).clone();
        config.json_logs = json_logs;
        let mut f = Instance::new(Arc::new(config), 0);
        let slow = f.invoke(sqs(&["slow"])).await.unwrap();
        assert_eq!(json(&slow.outcome), serde_json::json!({"batchItemFailures": []}), "json_logs {json_logs}");
        assert!(
            slow.duration >= Duration::from_secs(1) && slow.duration < Duration::from_millis(1500),
            "{:?}",
            slow.duration
        );
        f.shutdown().await;
        let logs = logs.lock().unwrap();
        let platform: Vec<&str> =
            logs.iter().filter(|l| l.stream == Stream::Platform).map(|l| l.line.as_str()).collect();
        if json_logs {
            let records: Vec<serde_json::Value> = platform.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
            let kinds: Vec<&str> = records.iter().map(|r| r["type"].as_str().unwrap()).collect();
            assert_eq!(kinds, ["platform.initStart", "platform.start", "platform.runtimeDone", "platform.report"]);
            let report = &records[3]["record"];
            assert_eq!(report["requestId"], slow.request_id.as_str());
            assert_eq!(report["status"], "success");
            let m = &report["metrics"];
            assert!(m["initDurationMs"].as_f64().unwrap() >= 1500.0, "{m}");
            assert!(m["durationMs"].as_f64().unwrap() < 1500.0, "{m}");
            assert!(m["billedDurationMs"].as_u64().unwrap() >= 2500, "init is billed with the first invocation: {m}");
            assert!(m["maxMemoryUsedMB"].as_u64().unwrap() >= 1, "{m}");
            assert!(records[0]["time"].as_str().unwrap().ends_with('Z'));
        } else {
            assert_eq!(platform[0], "INIT_START Runtime Version: provided:al2023");
            assert!(platform[1].starts_with("START RequestId: "));
            let report = platform.iter().find(|l| l.starts_with("REPORT")).unwrap();
            for part in ["Billed Duration: ", "Memory Size: 128 MB", "Max Memory Used: ", "Init Duration: "] {
                assert!(report.contains(part), "{part} in {report}");
            }
            let init: f64 = report.split("Init Duration: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert!(init >= 1500.0, "{report}");
        }
    }
}
