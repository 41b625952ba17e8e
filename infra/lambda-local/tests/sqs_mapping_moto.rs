//! The SQS event source mapping on moto's SQS, with the stand-in function: which messages a
//! batch response deletes, which come back, reserved concurrency zero, batch size and window, a
//! poison message's way to the dead-letter queue while the rest are processed, and Lambda's
//! scaling: five pollers whatever the reserved concurrency, throttles retried until the
//! visibility timeout, and more pollers while batches come back full.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use lambda_local::sqs::{self, BatchOutcome, MappingStats, Scaling, SqsMapping};
use lambda_local::FunctionConfig;
use test_support::moto::Moto;

struct Queue {
    url: String,
    arn: String,
    dlq: Option<String>,
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, max_receives: Option<u32>) -> Queue {
    let arn_of = |url: String| async move {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        (url, out.attributes().unwrap()[&QueueAttributeName::QueueArn].clone())
    };
    let mut create = sqs.create_queue().queue_name(name);
    let mut dlq = None;
    if let Some(n) = max_receives {
        let url =
            sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap().queue_url().unwrap().to_owned();
        let (url, arn) = arn_of(url).await;
        let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": n}).to_string();
        create = create.attributes(QueueAttributeName::RedrivePolicy, policy);
        dlq = Some(url);
    }
    let url = create.send().await.unwrap().queue_url().unwrap().to_owned();
    let (url, arn) = arn_of(url).await;
    Queue { url, arn, dlq }
}

async fn send(sqs: &aws_sdk_sqs::Client, q: &Queue, bodies: &[&str]) {
    for b in bodies {
        sqs.send_message().queue_url(&q.url).message_body(*b).send().await.unwrap();
    }
}

/// Every body on the queue, waiting or in flight (waits out the 3 s visibility timeout).
async fn remaining(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let got =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        for m in got.messages() {
            out.push(m.body().unwrap().to_owned());
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
    out.sort();
    out
}

fn function(timeout: Duration) -> Arc<FunctionConfig> {
    Arc::new(FunctionConfig {
        timeout,
        logs: Arc::new(|l| eprintln!("{l}")),
        ..FunctionConfig::new("StandIn", test_support::profile_dir().join("examples/stand_in"))
    })
}

/// A mapping of exactly `pollers` pollers (no scaling) and no reserved concurrency.
fn mapping(q: &Queue, batch_size: u32, window_secs: u64, pollers: u32) -> SqsMapping {
    SqsMapping {
        queue_url: q.url.clone(),
        queue_arn: q.arn.clone(),
        region: "us-east-1".into(),
        batch_size,
        batching_window: Duration::from_secs(window_secs),
        scaling: Scaling { initial: pollers, per_minute: 0, max: pollers },
        max_concurrency: None,
        reserved_concurrency: None,
        visibility_timeout: Duration::from_secs(3),
        report_batch_item_failures: true,
        enabled: true,
        time_scale: 1.0,
    }
}

/// AWS's scaling (five batches at first, 300 more a minute), with `reserved` concurrency.
fn aws_mapping(q: &Queue, batch_size: u32, reserved: Option<u32>, visibility_secs: u64) -> SqsMapping {
    SqsMapping {
        scaling: Scaling { initial: 5, per_minute: 300, max: 1000 },
        reserved_concurrency: reserved,
        visibility_timeout: Duration::from_secs(visibility_secs),
        ..mapping(q, batch_size, 0, 5)
    }
}

/// Runs the mapping until `done` holds (checked every 200 ms) or `limit` passes; returns the stats.
async fn run_until(
    sqs: &aws_sdk_sqs::Client,
    m: SqsMapping,
    f: Arc<FunctionConfig>,
    limit: Duration,
    done: impl Fn(&MappingStats) -> bool,
) -> MappingStats {
    run_sampling(sqs, m, f, limit, done, |_| {}).await
}

/// [`run_until`], with `sample` looking at the stats at every check.
async fn run_sampling(
    sqs: &aws_sdk_sqs::Client,
    m: SqsMapping,
    f: Arc<FunctionConfig>,
    limit: Duration,
    done: impl Fn(&MappingStats) -> bool,
    mut sample: impl FnMut(&mut MappingStats),
) -> MappingStats {
    let stats = Arc::new(Mutex::new(MappingStats::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sqs::run(sqs.clone(), m, f, stats.clone(), stopped));
    let started = Instant::now();
    while started.elapsed() < limit && !done(&stats.lock().unwrap()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sample(&mut stats.lock().unwrap());
    }
    // With no pollers (concurrency zero) the mapping has already returned.
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    let s = stats.lock().unwrap().clone();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_batch_response_keeps_only_the_listed_messages() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "partial", None).await;
    send(&sqs, &q, &["ok", "fail", "ok", "fail", "ok"]).await;
    let stats =
        run_until(&sqs, mapping(&q, 10, 1, 1), function(Duration::from_secs(5)), Duration::from_secs(20), |s| {
            s.records >= 5
        })
        .await;
    assert_eq!(stats.batches[0].outcome, BatchOutcome::Partial, "{stats:?}");
    assert_eq!((stats.batches[0].records, stats.batches[0].deleted, stats.batches[0].returned), (5, 3, 2));
    assert_eq!(remaining(&sqs, &q.url).await, ["fail", "fail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_response_an_error_a_crash_and_a_timeout_each_return_the_whole_batch() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    // Each case on its own queue, all at once.
    let mut cases = tokio::task::JoinSet::new();
    for (mode, outcome) in [
        ("unknown", BatchOutcome::InvalidResponse),
        ("garbage", BatchOutcome::InvalidResponse),
        ("error", BatchOutcome::FunctionError),
        ("crash", BatchOutcome::Crashed),
        ("sleep", BatchOutcome::Timeout),
    ] {
        let sqs = sqs.clone();
        cases.spawn(async move {
            let q = queue(&sqs, &format!("whole-{mode}"), None).await;
            send(&sqs, &q, &["ok", "fail", mode]).await;
            let f = function(Duration::from_secs(2));
            let stats =
                run_until(&sqs, mapping(&q, 10, 1, 1), f, Duration::from_secs(20), |s| s.invocations >= 1).await;
            let first = &stats.batches[0];
            assert_eq!(
                (first.outcome, first.records, first.deleted, first.returned),
                (outcome, 3, 0, 3),
                "{mode}: {stats:?}"
            );
            let errors = if outcome == BatchOutcome::InvalidResponse { 0 } else { stats.invocations };
            assert_eq!(
                stats.errors, errors,
                "{mode}: a failed invocation is an error, an unusable answer is not: {stats:?}"
            );
            let mut want = vec!["fail", "ok", mode];
            want.sort();
            assert_eq!(remaining(&sqs, &q.url).await, want, "{mode}");
        });
    }
    while let Some(case) = cases.join_next().await {
        case.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_concurrency_zero_or_a_disabled_mapping_runs_nothing() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "throttled", None).await;
    send(&sqs, &q, &["ok", "ok", "ok"]).await;
    let stopped = SqsMapping { reserved_concurrency: Some(0), ..mapping(&q, 10, 0, 5) };
    let disabled = SqsMapping { enabled: false, ..mapping(&q, 10, 0, 5) };
    for m in [stopped, disabled] {
        let stats = run_until(&sqs, m, function(Duration::from_secs(5)), Duration::from_secs(2), |_| false).await;
        assert_eq!(stats, MappingStats::default());
    }
    let out = sqs
        .get_queue_attributes()
        .queue_url(&q.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    assert_eq!(out.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages], "3", "never received");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_fill_to_the_batch_size_and_the_window_closes_the_last() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "sized", None).await;
    send(&sqs, &q, &["ok"; 10]).await;
    let stats = run_until(&sqs, mapping(&q, 4, 2, 1), function(Duration::from_secs(5)), Duration::from_secs(30), |s| {
        s.deleted >= 10
    })
    .await;
    let sizes: Vec<usize> = stats.batches.iter().map(|b| b.records).collect();
    assert_eq!(sizes, [4, 4, 2], "{stats:?}");
    assert!(stats.batches[..2].iter().all(|b| b.gathered_ms < 2000), "full batches go at once: {stats:?}");
    assert!(stats.batches[2].gathered_ms >= 2000, "the last waited for the window: {stats:?}");
    assert_eq!(stats.cold_starts, 1, "one environment, reused");
    assert!(remaining(&sqs, &q.url).await.is_empty());
}

/// A batch whose event would pass Lambda's 6 MB payload limit is invoked with what fits; the
/// rest is given back for the next batch, and the poller goes on (it used to stop for good).
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_six_megabytes_is_invoked_with_what_fits() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "heavy", None).await;
    // 30 messages of 240 KB: 7.2 MB in all.
    let big = "x".repeat(240 * 1024);
    send(&sqs, &q, &vec![big.as_str(); 30]).await;
    let m = SqsMapping { visibility_timeout: Duration::from_secs(30), ..mapping(&q, 30, 2, 1) };
    let stats =
        run_until(&sqs, m, function(Duration::from_secs(10)), Duration::from_secs(60), |s| s.deleted >= 30).await;
    assert_eq!((stats.deleted, stats.errors), (30, 0), "{stats:?}");
    assert!(stats.batches.len() >= 2, "{stats:?}");
    assert!(stats.batches.iter().all(|b| b.records * 240 * 1024 < lambda_local::MAX_PAYLOAD_BYTES), "{stats:?}");
    assert!(stats.given_back > 0, "{stats:?}");
    assert!(remaining(&sqs, &q.url).await.is_empty());
}

/// SQS waits in whole seconds: the last fraction of a batching window is slept out, not polled
/// with zero waits (which made hundreds of calls for one message).
#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_a_fractional_window_is_waited_not_polled() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "fraction", None).await;
    send(&sqs, &q, &["ok"]).await;
    let m = SqsMapping { batching_window: Duration::from_millis(1500), ..mapping(&q, 10, 0, 1) };
    let stats = run_until(&sqs, m, function(Duration::from_secs(5)), Duration::from_secs(20), |s| s.deleted >= 1).await;
    assert_eq!(stats.batches.len(), 1, "{stats:?}");
    assert!(stats.batches[0].gathered_ms >= 1500, "the window was kept: {stats:?}");
    assert!(stats.receive_calls <= 8, "{} ReceiveMessage calls for one message", stats.receive_calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_reaches_the_dlq_after_max_receives_and_the_rest_are_processed() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "poisoned", Some(3)).await;
    send(&sqs, &q, &["ok", "ok", "fail", "ok", "ok"]).await;
    let dlq = q.dlq.clone().unwrap();
    let stats =
        run_until(&sqs, mapping(&q, 10, 0, 2), function(Duration::from_secs(5)), Duration::from_secs(30), |s| {
            s.deleted >= 4 && s.returned >= 3
        })
        .await;
    assert_eq!(stats.deleted, 4, "{stats:?}");
    // Received three times (maxReceiveCount) and returned each time; SQS moves it to the DLQ
    // at the next receive instead of delivering it a fourth time.
    // (The four good ones may come in one batch or several: two pollers, short receives.)
    assert_eq!(stats.returned, 3, "{stats:?}");
    assert_eq!(stats.batches.iter().filter(|b| b.returned == 1).count(), 3, "{stats:?}");
    assert!(remaining(&sqs, &q.url).await.is_empty());
    assert_eq!(remaining(&sqs, &dlq).await, ["fail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_received_again_within_the_window_is_one_record() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "redelivered", None).await;
    send(&sqs, &q, &["ok"]).await;
    // Visible again after 1 s while the 3 s window is still gathering: SQS delivers it twice.
    let m = SqsMapping { visibility_timeout: Duration::from_secs(1), ..mapping(&q, 10, 3, 1) };
    let stats =
        run_until(&sqs, m, function(Duration::from_secs(5)), Duration::from_secs(20), |s| s.invocations >= 1).await;
    assert_eq!((stats.batches[0].records, stats.batches[0].deleted), (1, 1), "{stats:?}");
    assert_eq!(stats.delete_failures, 0, "deleted with the newest receipt handle: {stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_pollers_run_one_execution_at_a_time_and_the_rest_are_throttled_then_retried() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "reserved-one", None).await;
    send(&sqs, &q, &["slow"; 6]).await;
    // Batches of one: the five first pollers each take a message; one runs (a second each).
    let mut peaks = Vec::new();
    let s = run_sampling(
        &sqs,
        aws_mapping(&q, 1, Some(1), 60),
        function(Duration::from_secs(5)),
        Duration::from_secs(40),
        |s| s.deleted >= 6,
        |s| peaks.push((s.pollers, s.take_peak())),
    )
    .await;
    assert_eq!((s.deleted, s.invocations), (6, 6), "{s:?}");
    assert!(s.throttles > 0, "pollers beyond the reserved concurrency are throttled: {s:?}");
    assert!(peaks.iter().all(|(_, running)| *running <= 1), "never more than one execution: {peaks:?}");
    assert!(peaks.iter().any(|(pollers, _)| *pollers >= 5), "five pollers at least: {peaks:?}");
    assert_eq!(s.expired_batches, 0, "every throttled batch got its turn within 60 s: {s:?}");
    assert_eq!(s.cold_starts, 1, "one environment, reused: {s:?}");
    assert_eq!(s.max_receive_count, 1, "{s:?}");
    assert!(remaining(&sqs, &q.url).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_throttled_past_its_visibility_timeout_comes_back_with_its_receive_count_up() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "expiring", None).await;
    send(&sqs, &q, &["slow"; 6]).await;
    // Each execution takes a second; a throttled batch waits at most 2 s before its messages
    // become visible again, so some are received twice or more. A batch invoked just before
    // its visibility ends can be received and run again meanwhile (at least once, as on AWS,
    // where the stale delete also "succeeds"): deletes may outnumber the messages.
    let stats = run_until(
        &sqs,
        aws_mapping(&q, 1, Some(1), 2),
        function(Duration::from_secs(5)),
        Duration::from_secs(60),
        |s| s.deleted >= 6 && s.undeleted_sent_ms.is_empty() && s.running == 0,
    )
    .await;
    assert!(stats.deleted >= 6, "{stats:?}");
    assert!(stats.expired_batches > 0, "{stats:?}");
    assert!(stats.max_receive_count >= 2, "{stats:?}");
    assert!(stats.records >= 6, "{stats:?}");
    assert!(remaining(&sqs, &q.url).await.is_empty(), "every message done: {stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pollers_grow_while_batches_come_back_full_when_nothing_throttles() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let q = queue(&sqs, "scaling", None).await;
    send(&sqs, &q, &["slow"; 24]).await;
    // No reserved concurrency: two pollers at first, two more a second, at most six.
    let m = SqsMapping { scaling: Scaling { initial: 2, per_minute: 120, max: 6 }, ..aws_mapping(&q, 1, None, 30) };
    let stats = Arc::new(Mutex::new(MappingStats::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sqs::run(sqs.clone(), m, function(Duration::from_secs(5)), stats.clone(), stopped));
    let started = Instant::now();
    let mut most = 0;
    while stats.lock().unwrap().deleted < 24 && started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        most = most.max(stats.lock().unwrap().take_peak());
    }
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    let s = stats.lock().unwrap().clone();
    assert_eq!(s.deleted, 24, "{s:?}");
    assert_eq!(s.throttles, 0, "{s:?}");
    assert!(most > 2 && most <= 6, "scaled up from 2, never past 6: {most}");
}
