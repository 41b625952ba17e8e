//! The workshop's lesson, on the clock it is taught at (`--time-scale 1`): three black-box runs of
//! the `local` binary side by side, about 300 orders each, on their own moto servers, with
//! DynamoDB's provisioned throughput between the functions and moto and Lambda's SQS scaling.
//!
//! - As deployed (paced, reserved concurrency 1): the table never consumes more than its 5 WCU
//!   over any minute plus one transaction, is never throttled, while the mapping's five pollers
//!   are throttled by Lambda; every order counted once. The graphs file carries the run's series.
//! - Unpaced, burst empty: the table throttles, and still every order is counted once.
//! - A visibility timeout shorter than the drain: batches wait out their visibility while
//!   throttled, receive counts rise; every order is counted once or waits in the DLQ uncounted.
//!
//! Slow by nature (each run takes about three minutes of pacing); it sleeps, so it sorts right
//! after the arm64 build and overlaps it.

use test_support as support;

use std::process::{Child, Command, Stdio};

/// `local` of this workspace: cargo builds every package's binaries for the integration tests.
fn local(zips: &std::path::Path, logs: &std::path::Path, args: &[&str]) -> Child {
    Command::new(support::profile_dir().join("local"))
        .args(["--count", "300", "--time-scale", "1", "--json", "--moto-server"])
        .arg(support::tool("moto_server"))
        .arg("--lambda-dir")
        .arg(zips)
        .arg("--handlers")
        .arg(support::handler_binary("publish-metrics").parent().expect("a directory"))
        .arg("--logs")
        .arg(logs)
        .args(args)
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("local starts")
}

fn summary(child: Child, what: &str) -> serde_json::Value {
    let out = child.wait_with_output().expect("local ends");
    let (stdout, stderr) = (support::text(&out.stdout), support::text(&out.stderr));
    let tail: String =
        stderr.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "{what}: {}\n{stdout}\n{tail}", out.status);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: one JSON document on stdout ({e}): {stdout}"))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Every metric counted once, or waiting uncounted in the DLQ; the orders all sent.
fn exact(s: &serde_json::Value, what: &str) {
    assert_eq!(s["exact"], true, "{what}: {s:#}");
    assert_eq!(u(&s["sent"]), 300, "{what}");
    for m in s["metrics"].as_array().expect("metrics") {
        assert_eq!(u(&m["counted"]) + u(&m["deadLettered"]), u(&m["sent"]), "{what}: {m}");
    }
    let total = s["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "TotalSales").expect("TotalSales");
    assert_eq!(u(&total["sent"]), 300, "{what}");
}

#[test]
fn paced_writes_stay_under_the_provisioned_line_and_every_order_is_counted_once_whatever_the_design() {
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paced = local(zips.path(), dirs[0].path(), &[]);
    let unpaced = local(zips.path(), dirs[1].path(), &["--unpaced", "--burst", "empty"]);
    // 30 s: the least AWS accepts for a function with a 30 s timeout.
    let short = local(zips.path(), dirs[2].path(), &["--visibility-timeout", "30"]);

    // As deployed.
    let s = summary(paced, "paced");
    exact(&s, "paced");
    let t = &s["table"];
    assert_eq!(s["overrides"], serde_json::json!([]));
    assert_eq!(u(&t["throttledRequests"]), 0, "paced writes are never throttled: {t}");
    let allowed = u(&t["provisionedWcuPerMinute"]) + u(&t["largestWriteWcu"]);
    assert!(u(&t["mostWcuInAMinute"]) <= allowed, "at most 5 x 60 plus one transaction in any minute: {t}");
    assert!(u(&t["consumedWcu"]) > u(&t["provisionedWcuPerMinute"]), "the run lasts longer than a minute: {t}");
    let l = &s["lambda"];
    assert!(u(&l["throttles"]) > 0, "five pollers, one execution: Lambda throttles the rest: {l}");
    assert_eq!(u(&l["peakConcurrency"]), 1, "{l}");
    assert_eq!((u(&l["errors"]), u(&l["timeouts"])), (0, 0), "{l}");
    // The graphs: the dashboard's widgets, each titled as declared, and the series they draw
    // add up to the run's own figures.
    let page = std::fs::read_to_string(s["graphs"].as_str().unwrap()).unwrap();
    let stack = metrics_stack::metrics_stack(&metrics_stack::MetricsStackProps::standalone()).unwrap();
    for w in stack.dashboard().widgets() {
        assert!(page.contains(&format!("<h2>{}</h2>", local::graphs::escape(&w.title))), "{} in the page", w.title);
    }
    assert_eq!(page.matches("<svg").count(), stack.dashboard().widgets().len() + 1, "and the one-minute sums");
    let series = local::graphs::series_of(&page).expect("the series in the page");
    let samples = series["samples"].as_array().unwrap();
    let sum = |k: &str| samples.iter().map(|x| u(&x[k])).sum::<u64>();
    assert_eq!(sum("consumedWcu"), u(&t["consumedWcu"]));
    assert_eq!(sum("counted"), u(&s["tally"]["counted"]));
    assert_eq!(sum("throttles"), u(&l["throttles"]));
    assert!(samples.iter().all(|x| u(&x["concurrency"]) <= 1));
    let predicted = s["predictedDrainSecs"].as_f64().unwrap();
    let drained = s["drainSecs"].as_f64().unwrap();
    eprintln!("paced: drained in {drained:.1} s, synth predicted {predicted:.1} s; {t}");

    // Unpaced: the table throttles, the counts hold.
    let s = summary(unpaced, "unpaced");
    exact(&s, "unpaced");
    assert!(u(&s["table"]["throttledRequests"]) > 0, "{}", s["table"]);
    assert!(u(&s["table"]["throttledWrites"]) > 0, "the handler saw the throttles: {}", s["table"]);
    assert_eq!(s["table"]["budget"], "unpaced");

    // A visibility timeout the drain outlasts: batches expire while throttled and come back.
    let s = summary(short, "short visibility");
    exact(&s, "short visibility");
    let l = &s["lambda"];
    assert!(u(&l["expiredBatches"]) > 0, "{l}");
    assert!(u(&l["maxReceiveCount"]) > 1, "{l}");
}
