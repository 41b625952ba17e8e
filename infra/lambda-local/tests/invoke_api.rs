//! Lambda's Invoke API end to end, called as a user's code calls Lambda: with the AWS SDK for
//! Rust and with `aws lambda invoke --endpoint-url` (awscli from the tools' venv), in front of
//! the stand-in bootstrap (`examples/stand_in.rs`, whose behaviour each SQS record's body
//! chooses). Build the example first: `cargo build -p lambda-local --examples`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use aws_sdk_lambda::Client;
use base64::Engine as _;
use lambda_local::invoke_api::{ApiEvent, ApiOptions, InvokeApi, Served, MAX_ASYNC_PAYLOAD_BYTES};
use lambda_local::{FunctionConfig, LogLine, MAX_PAYLOAD_BYTES};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:StandIn";

fn stand_in(timeout: Duration, logs: Arc<Mutex<Vec<LogLine>>>) -> Arc<FunctionConfig> {
    Arc::new(FunctionConfig {
        timeout,
        logs: Arc::new(move |l| logs.lock().unwrap().push(l)),
        ..FunctionConfig::new("StandIn", test_support::profile_dir().join("examples/stand_in"))
    })
}

/// What a test sees of the API: its address, every event it reported and every log line.
struct Setup {
    api: InvokeApi,
    events: Arc<Mutex<Vec<ApiEvent>>>,
    logs: Arc<Mutex<Vec<LogLine>>>,
}

async fn serve(reserved: Option<u32>, timeout: Duration, options: ApiOptions) -> Setup {
    let (events, logs) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let seen = events.clone();
    let options = ApiOptions { report: Arc::new(move |e| seen.lock().unwrap().push(e)), ..options };
    let served = Served { config: stand_in(timeout, logs.clone()), reserved_concurrency: reserved };
    let api = InvokeApi::start(vec![served], options).await.unwrap();
    Setup { api, events, logs }
}

/// An SDK client for the API; no retries, so a throttle is seen as it is answered.
async fn client(api: &InvokeApi) -> Client {
    let config = test_support::moto::sdk_config_at(&api.endpoint()).await;
    Client::from_conf(aws_sdk_lambda::config::Builder::from(&config).retry_config(RetryConfig::disabled()).build())
}

fn sqs(body: &str) -> Blob {
    Blob::new(serde_json::json!({"Records": [{"messageId": "m0", "body": body}]}).to_string())
}

fn json(blob: Option<&Blob>) -> serde_json::Value {
    serde_json::from_slice(blob.expect("a payload").as_ref()).expect("a JSON payload")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_invokes_with_lambdas_answer_a_log_tail_and_a_warm_environment() {
    let s = serve(Some(2), Duration::from_secs(5), ApiOptions::default()).await;
    let lambda = client(&s.api).await;
    let context = base64::engine::general_purpose::STANDARD.encode(r#"{"custom":{"caller":"test"}}"#);
    let out = lambda
        .invoke()
        .function_name("StandIn")
        .payload(Blob::new(r#"{"hello": 1}"#))
        .log_type(LogType::Tail)
        .client_context(&context)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.executed_version(), Some("$LATEST"));
    assert_eq!(out.function_error(), None);
    let echo = json(out.payload());
    assert_eq!(echo["event"], serde_json::json!({"hello": 1}));
    assert_eq!(echo["clientContext"], context.as_str(), "ClientContext reaches the runtime");
    assert_eq!(echo["functionArn"], ARN);
    let id = echo["requestId"].as_str().unwrap().to_owned();
    use aws_sdk_lambda::operation::RequestId as _;
    assert_eq!(out.request_id(), Some(id.as_str()), "x-amzn-RequestId is the function's request ID");
    let tail = base64::engine::general_purpose::STANDARD.decode(out.log_result().expect("Tail was asked")).unwrap();
    let tail = String::from_utf8(tail).unwrap();
    for part in ["INIT_START", "stand-in started", &format!("START RequestId: {id}"), &format!("echo {id}"), "REPORT"] {
        assert!(tail.contains(part), "{part} in the tail:\n{tail}");
    }

    // By ARN, and warm: no init this time; without Tail, no log.
    let out = lambda.invoke().function_name(ARN).log_type(LogType::Tail).send().await.unwrap();
    assert_eq!(json(out.payload())["event"], serde_json::json!({}), "no payload is an empty object");
    let tail = base64::engine::general_purpose::STANDARD.decode(out.log_result().unwrap()).unwrap();
    let tail = String::from_utf8(tail).unwrap();
    assert!(!tail.contains("INIT_START") && tail.contains("REPORT"), "{tail}");
    let out = lambda.invoke().function_name("StandIn:$LATEST").send().await.unwrap();
    assert_eq!(out.log_result(), None);
    let out = lambda.invoke().function_name("StandIn").qualifier("$LATEST").send().await.unwrap();
    assert_eq!(out.executed_version(), Some("$LATEST"), "the qualifier as a query parameter");
    let cold: Vec<bool> = s
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ApiEvent::Invoked { cold_start, .. } => Some(*cold_start),
            _ => None,
        })
        .collect();
    assert_eq!(cold, [true, false, false, false], "one environment, reused");
    let inits = s.logs.lock().unwrap().iter().filter(|l| l.line.starts_with("INIT_START")).count();
    assert_eq!(inits, 1);
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_failure_is_a_payload_with_x_amz_function_error_never_an_http_error() {
    let s = serve(Some(1), Duration::from_secs(1), ApiOptions::default()).await;
    let lambda = client(&s.api).await;
    let cases = [
        ("error", "StandIn.Error", "failed on purpose".to_owned()),
        ("crash", "Runtime.ExitError", "Error: Runtime exited with error: exit status: 3".to_owned()),
        ("sleep", "Sandbox.Timedout", "Error: Task timed out after 1.00 seconds".to_owned()),
        ("big", "Function.ResponseSizeTooLarge", "exceeded maximum allowed payload size (6291556 bytes)".to_owned()),
    ];
    for (body, error_type, message) in cases {
        let out = lambda.invoke().function_name("StandIn").payload(sqs(body)).send().await.unwrap();
        assert_eq!(out.status_code(), 200, "{body}");
        assert_eq!(out.function_error(), Some("Unhandled"), "{body}");
        let doc = json(out.payload());
        assert_eq!(doc["errorType"], error_type, "{body}: {doc}");
        assert!(doc["errorMessage"].as_str().unwrap().contains(&message), "{body}: {doc}");
    }
    // After a crash and a timeout the environment was reset; the next invocation works.
    let out = lambda.invoke().function_name("StandIn").payload(sqs("ok")).send().await.unwrap();
    assert_eq!(out.function_error(), None);
    assert_eq!(json(out.payload()), serde_json::json!({"batchItemFailures": []}));
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_the_documented_error_codes() {
    let s = serve(Some(1), Duration::from_secs(5), ApiOptions::default()).await;
    let lambda = client(&s.api).await;
    let code = |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::invoke::InvokeError>| {
        use aws_sdk_lambda::error::ProvideErrorMetadata as _;
        e.code().map(str::to_owned)
    };
    let unknown = lambda.invoke().function_name("NoSuchFunction").send().await.unwrap_err();
    assert!(unknown.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()), "{unknown:?}");
    let version = lambda.invoke().function_name("StandIn").qualifier("7").send().await.unwrap_err();
    assert_eq!(code(&version).as_deref(), Some("ResourceNotFoundException"), "only $LATEST is here");
    let elsewhere = lambda
        .invoke()
        .function_name("arn:aws:lambda:eu-west-1:123456789012:function:StandIn")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&elsewhere).as_deref(), Some("ResourceNotFoundException"), "another region's function");

    // (Before the Event below, which holds the only environment a while.)
    // Both sides of the client context's limit (3583 bytes of base64): a JSON object padded to
    // 2685 bytes encodes to 3580, one of 2688 to 3584.
    let context = |n: usize| {
        let doc = format!("{{\"p\": \"{}\"}}", "x".repeat(n - 9));
        base64::engine::general_purpose::STANDARD.encode(doc)
    };
    assert_eq!((context(2685).len(), context(2688).len()), (3580, 3584));
    let fits = lambda.invoke().function_name("StandIn").client_context(context(2685)).send().await.unwrap();
    assert_eq!(json(fits.payload())["clientContext"], context(2685).as_str());
    let long = lambda.invoke().function_name("StandIn").client_context(context(2688)).send().await.unwrap_err();
    assert_eq!(code(&long).as_deref(), Some("InvalidParameterValueException"));
    // Values outside the enums are refused, not taken for the default.
    let kind = lambda.invoke().function_name("StandIn").invocation_type(InvocationType::from("Later")).send().await;
    assert_eq!(code(&kind.unwrap_err()).as_deref(), Some("ValidationException"));
    let log = lambda.invoke().function_name("StandIn").log_type(LogType::from("Everything")).send().await;
    assert_eq!(code(&log.unwrap_err()).as_deref(), Some("ValidationException"));
    // Both sides of both payload limits.
    let padded = |n: usize| {
        let mut p = b"{\"pad\": \"".to_vec();
        p.resize(n - 2, b'x');
        p.extend_from_slice(b"\"}");
        Blob::new(p)
    };
    let over =
        lambda.invoke().function_name("StandIn").payload(padded(MAX_PAYLOAD_BYTES + 1)).send().await.unwrap_err();
    assert!(over.as_service_error().is_some_and(|e| e.is_request_too_large_exception()), "{over:?}");
    let at = lambda.invoke().function_name("StandIn").payload(padded(MAX_PAYLOAD_BYTES)).send().await.unwrap();
    // 6 MB exactly is accepted and invoked; the stand-in's echo of it is then over the response
    // limit, which is the function's failure.
    assert_eq!(at.status_code(), 200);
    assert_eq!(json(at.payload())["errorType"], "Function.ResponseSizeTooLarge");
    let event = |n| lambda.invoke().function_name("StandIn").invocation_type(InvocationType::Event).payload(padded(n));
    let over = event(MAX_ASYNC_PAYLOAD_BYTES + 1).send().await.unwrap_err();
    assert!(over.as_service_error().is_some_and(|e| e.is_request_too_large_exception()), "{over:?}");
    assert_eq!(event(MAX_ASYNC_PAYLOAD_BYTES).send().await.unwrap().status_code(), 202);

    let garbage = lambda.invoke().function_name("StandIn").payload(Blob::new("not json")).send().await.unwrap_err();
    assert!(garbage.as_service_error().is_some_and(|e| e.is_invalid_request_content_exception()), "{garbage:?}");
    let bad_context = lambda.invoke().function_name("StandIn").client_context("not base64!").send().await.unwrap_err();
    assert_eq!(code(&bad_context).as_deref(), Some("InvalidParameterValueException"));
    let dry = lambda.invoke().function_name("StandIn").invocation_type(InvocationType::DryRun).send().await.unwrap();
    assert_eq!(dry.status_code(), 204);
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_reserved_concurrency_a_call_is_throttled() {
    let s = serve(Some(1), Duration::from_secs(5), ApiOptions::default()).await;
    let lambda = client(&s.api).await;
    let busy = tokio::spawn({
        let lambda = lambda.clone();
        async move { lambda.invoke().function_name("StandIn").payload(sqs("slow")).send().await }
    });
    // Wait until the slow invocation holds the only environment.
    for _ in 0..100 {
        if s.logs.lock().unwrap().iter().any(|l| l.line.contains("\"slow\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let throttled = lambda.invoke().function_name("StandIn").send().await.unwrap_err();
    let e = throttled.as_service_error().expect("a service error");
    assert!(e.is_too_many_requests_exception(), "{throttled:?}");
    let aws_sdk_lambda::operation::invoke::InvokeError::TooManyRequestsException(t) = e else { unreachable!() };
    assert_eq!(t.reason().map(|r| r.as_str()), Some("ReservedFunctionConcurrentInvocationLimitExceeded"));
    assert_eq!(busy.await.unwrap().unwrap().function_error(), None, "the running one finishes");
    assert!(s.events.lock().unwrap().contains(&ApiEvent::Throttled { function: "StandIn".into(), limit: 1 }));
    // Free again.
    lambda.invoke().function_name("StandIn").send().await.unwrap();
    s.api.shutdown().await;

    // Reserved concurrency 0: every call is throttled.
    let s = serve(Some(0), Duration::from_secs(5), ApiOptions::default()).await;
    let refused = client(&s.api).await.invoke().function_name("StandIn").send().await.unwrap_err();
    assert!(refused.as_service_error().is_some_and(|e| e.is_too_many_requests_exception()), "{refused:?}");
    s.api.shutdown().await;
}

/// Waits until `events` holds `n` events that `pick` selects.
async fn wait_for(events: &Mutex<Vec<ApiEvent>>, n: usize, pick: impl Fn(&ApiEvent) -> bool) -> Vec<ApiEvent> {
    for _ in 0..500 {
        let found: Vec<ApiEvent> = events.lock().unwrap().iter().filter(|e| pick(e)).cloned().collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} such events: {:?}", events.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_is_queued_run_and_retried_twice_under_its_request_id() {
    let delays = vec![Duration::from_millis(100), Duration::from_millis(200)];
    let s = serve(Some(1), Duration::from_secs(5), ApiOptions { retry_delays: delays, ..Default::default() }).await;
    let lambda = client(&s.api).await;
    let out = lambda
        .invoke()
        .function_name("StandIn")
        .invocation_type(InvocationType::Event)
        .payload(sqs("ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 202);
    assert!(out.payload().is_none_or(|p| p.as_ref().is_empty()), "nothing but the status");
    let ok = wait_for(&s.events, 1, |e| matches!(e, ApiEvent::Invoked { .. })).await;
    assert!(matches!(&ok[0], ApiEvent::Invoked { error: None, attempt: 1, .. }), "{ok:?}");

    let failing = lambda
        .invoke()
        .function_name("StandIn")
        .invocation_type(InvocationType::Event)
        .payload(sqs("error"))
        .send()
        .await
        .unwrap();
    use aws_sdk_lambda::operation::RequestId as _;
    let id = failing.request_id().expect("x-amzn-RequestId").to_owned();
    let dropped = wait_for(&s.events, 1, |e| matches!(e, ApiEvent::Dropped { .. })).await;
    assert!(
        matches!(&dropped[0], ApiEvent::Dropped { request_id, why, .. } if request_id == &id && why.contains("3 attempt(s)")),
        "{dropped:?}"
    );
    let attempts: Vec<(u32, Option<String>)> = s
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ApiEvent::Invoked { request_id, attempt, error, .. } if request_id == &id => {
                Some((*attempt, error.clone()))
            }
            _ => None,
        })
        .collect();
    let failed = Some("StandIn.Error".to_owned());
    assert_eq!(attempts, [(1, failed.clone()), (2, failed.clone()), (3, failed)]);
    let starts =
        s.logs.lock().unwrap().iter().filter(|l| l.line == format!("START RequestId: {id} Version: $LATEST")).count();
    assert_eq!(starts, 3, "each attempt runs under the request ID Invoke returned");
    s.api.shutdown().await;

    // No capacity at all: the event waits, then is dropped at its maximum age.
    let options = ApiOptions { max_event_age: Duration::from_millis(200), ..Default::default() };
    let s = serve(Some(0), Duration::from_secs(5), options).await;
    let out = client(&s.api)
        .await
        .invoke()
        .function_name("StandIn")
        .invocation_type(InvocationType::Event)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 202, "accepted: it is queued");
    let dropped = wait_for(&s.events, 1, |e| matches!(e, ApiEvent::Dropped { .. })).await;
    assert!(
        matches!(&dropped[0], ApiEvent::Dropped { why, .. } if why.contains("MaximumEventAgeInSeconds")),
        "{dropped:?}"
    );
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_lambda_invoke_with_the_endpoint_url() {
    let s = serve(Some(1), Duration::from_secs(5), ApiOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let run = |args: &[&str]| test_support::aws_lambda_invoke(&s.api.endpoint()).args(args).output().unwrap();
    let out = run(&[
        "--function-name",
        "StandIn",
        "--payload",
        r#"{"from": "cli"}"#,
        "--log-type",
        "Tail",
        out_file.to_str().unwrap(),
    ]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["StatusCode"], 200);
    assert_eq!(answer["ExecutedVersion"], "$LATEST");
    let log = base64::engine::general_purpose::STANDARD.decode(answer["LogResult"].as_str().unwrap()).unwrap();
    assert!(text(&log).contains("REPORT RequestId"), "{}", text(&log));
    let echo: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(echo["event"], serde_json::json!({"from": "cli"}));

    let out = run(&["--function-name", "NoSuchFunction", out_file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ResourceNotFoundException"), "{}", text(&out.stderr));
    s.api.shutdown().await;
}
