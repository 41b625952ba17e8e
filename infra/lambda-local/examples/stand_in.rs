//! A stand-in function for the tests: a Lambda runtime written against the Runtime API with
//! plain HTTP (no runtime crate), whose behaviour each SQS record's body chooses:
//! `ok`, `fail` (listed in batchItemFailures), `unknown` (lists an ID not in the batch),
//! `garbage` (a response that is not JSON), `error` (posts an invocation error), `crash` (exits),
//! `sleep` (runs past any timeout), `slow` (answers `ok` after a second), `big` (a 7 MB
//! response), `hog` (holds 200 MB for half a second, then answers `ok`). Any other payload is echoed with
//! the invocation's headers and environment. `STAND_IN_INIT=error` posts `init/error` and
//! exits; `STAND_IN_INIT=exit` exits before asking for work.

use std::io::{Read, Write};
use std::net::TcpStream;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn request(api: &str, method: &str, path: &str, extra: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(api).expect("the Runtime API answers");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: raw[split + 4..].to_vec() }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn main() {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").expect("AWS_LAMBDA_RUNTIME_API is set");
    match std::env::var("STAND_IN_INIT").as_deref() {
        Ok("error") => {
            let body = br#"{"errorType":"Runtime.ConfigError","errorMessage":"TABLE_NAME is not set"}"#;
            let a = request(
                &api,
                "POST",
                "/2018-06-01/runtime/init/error",
                "Lambda-Runtime-Function-Error-Type: Runtime.ConfigError\r\n",
                body,
            );
            println!("init error posted: {}", a.status);
            std::process::exit(1);
        }
        Ok("exit") => std::process::exit(2),
        Ok(slow) if slow.starts_with("sleep-ms=") => {
            let ms: u64 = slow["sleep-ms=".len()..].parse().expect("a number of milliseconds");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        _ => {}
    }
    println!("stand-in started, pid {}", std::process::id());
    loop {
        let next = request(&api, "GET", "/2018-06-01/runtime/invocation/next", "", b"");
        let id = header(&next, "lambda-runtime-aws-request-id").to_owned();
        let event: serde_json::Value = serde_json::from_slice(&next.body).unwrap_or_default();
        let respond = |body: &[u8]| {
            let a = request(&api, "POST", &format!("/2018-06-01/runtime/invocation/{id}/response"), "", body);
            println!("response posted: {}", a.status);
        };
        let Some(records) = event.get("Records").and_then(|r| r.as_array()) else {
            // Before the response: once that is posted the process may be stopped at any time.
            println!("echo {id}");
            let echo = serde_json::json!({
                "event": event,
                "requestId": id,
                "deadlineMs": header(&next, "lambda-runtime-deadline-ms"),
                "functionArn": header(&next, "lambda-runtime-invoked-function-arn"),
                "traceId": header(&next, "lambda-runtime-trace-id"),
                "clientContext": header(&next, "lambda-runtime-client-context"),
                "env": std::env::vars().collect::<std::collections::BTreeMap<_, _>>(),
            });
            respond(echo.to_string().as_bytes());
            continue;
        };
        let bodies: Vec<&str> = records.iter().map(|r| r["body"].as_str().unwrap_or("")).collect();
        let ids: Vec<&str> = records.iter().map(|r| r["messageId"].as_str().unwrap_or("")).collect();
        println!("{}", serde_json::json!({"batch": bodies, "ids": ids}));
        if bodies.contains(&"crash") {
            eprintln!("crashing on purpose");
            std::process::exit(3);
        }
        if bodies.contains(&"sleep") {
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        if bodies.contains(&"orphan") {
            // A child that inherits stdout and outlives this process unless its group is killed.
            let _ = std::process::Command::new("sleep").arg("600").spawn();
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        if bodies.contains(&"hog") {
            // Touched, so resident: Lambda counts what is used, not what is reserved.
            let hog = vec![1u8; 200 * 1024 * 1024];
            std::thread::sleep(std::time::Duration::from_millis(500));
            println!("held {} MB", hog.iter().map(|&b| usize::from(b)).sum::<usize>() >> 20);
        }
        if bodies.contains(&"slow") {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        if bodies.contains(&"error") {
            let body = br#"{"errorType":"StandIn.Error","errorMessage":"failed on purpose"}"#;
            let a = request(&api, "POST", &format!("/2018-06-01/runtime/invocation/{id}/error"), "", body);
            println!("error posted: {}", a.status);
            continue;
        }
        if bodies.contains(&"garbage") {
            respond(b"this is not json");
            continue;
        }
        if bodies.contains(&"big") {
            respond(&vec![b' '; 7 * 1024 * 1024]);
            continue;
        }
        let mut failures: Vec<serde_json::Value> = records
            .iter()
            .filter(|r| r["body"] == "fail")
            .map(|r| serde_json::json!({"itemIdentifier": r["messageId"]}))
            .collect();
        if bodies.contains(&"unknown") {
            failures.push(serde_json::json!({"itemIdentifier": "not-in-this-batch"}));
        }
        respond(serde_json::json!({"batchItemFailures": failures}).to_string().as_bytes());
        if bodies.contains(&"exit-after") {
            // Gone while idle, as a runtime that crashes between invocations.
            std::process::exit(0);
        }
    }
}
