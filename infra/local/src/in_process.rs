//! The fast mode: PublishMetrics' logic consumes the queue in this process under the mapping's
//! settings (batch size, batching window, concurrency), deleting only what succeeded. No
//! process, no Runtime API: used by tests that inject faults into the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_events::capacity::WriteBudget;
use publish_metrics::{process, Invocation, Pacer, RetryPolicy, Spacing, Store};

use super::error::aws;
use super::{until_drained, Drain, LocalError, MappingSettings, Standing, Tally};

/// How a local run consumes the queue.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    pub settings: MappingSettings,
    /// Multiplies the batching window and the visibility timeout, for a quick demo.
    pub time_scale: f64,
    /// Give up after this long.
    pub timeout: Duration,
    /// Each consumer's write budget (already scaled to the run's clock).
    pub budget: WriteBudget,
}

/// One consumer: gathers a batch as Lambda does (up to the batch size or until the window
/// closes), runs PublishMetrics' logic on it, and deletes what succeeded.
async fn consumer<S: Store + Send + Sync + 'static>(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    store: Arc<S>,
    options: ConsumeOptions,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) -> Result<(), LocalError> {
    let window = options.settings.batching_window.mul_f64(options.time_scale);
    let visibility = ((f64::from(options.settings.visibility_timeout_secs) * options.time_scale).ceil() as i32).max(1);
    // Each consumer stands for one execution environment, with its own bucket.
    let pacer = Pacer::new(options.budget);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut messages = Vec::new();
        while messages.len() < options.settings.batch_size as usize && !stop.load(Ordering::Relaxed) {
            let left = options.settings.batch_size as usize - messages.len();
            let out = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(left.min(10) as i32)
                .wait_time_seconds(1)
                .visibility_timeout(visibility)
                .send()
                .await
                .map_err(aws("cannot receive from the queue"))?;
            let got = out.messages().len();
            messages.extend(out.messages().iter().cloned());
            if started.elapsed() >= window || (got == 0 && !messages.is_empty() && window.is_zero()) {
                break;
            }
        }
        if messages.is_empty() {
            continue;
        }
        // Only what the handler reads; the queue ARN does not matter here.
        let event = lambda_local::sqs::event(&messages, "", "");
        let invocation = Invocation::with_time_left(options.settings.function_timeout);
        let spacing = Spacing { retry: RetryPolicy::default(), pacer: &pacer };
        let outcome = process(store.as_ref(), event, spacing, invocation).await;
        let failed: Vec<String> =
            outcome.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        let done: Vec<_> =
            messages.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())).collect();
        lambda_local::sqs::delete(&sqs, &queue_url, &done).await?;
        let mut t = tally.lock().map_err(|_| LocalError::ConsumerPanicked)?;
        t.batches += 1;
        t.counted += outcome.counted;
        t.duplicates += outcome.duplicates;
        t.failures += failed.len();
        t.transactions += outcome.transactions.len();
        t.transaction_items += outcome.transactions.iter().sum::<usize>();
        t.wcu += outcome.wcu;
    }
    Ok(())
}

/// Consumes `queue_url` with `options.settings.consumers` consumers until `expected` events are
/// accounted for (counted, or in the dead-letter queue) and the queue is empty, reporting
/// where things stand every second. Returns the tally.
pub async fn consume<S: Store + Send + Sync + 'static>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dlq_url: &str,
    store: Arc<S>,
    options: &ConsumeOptions,
    sent: usize,
    progress: &mut (dyn FnMut(&Standing) + Send),
) -> Result<Tally, LocalError> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..options.settings.consumers {
        tasks.push(tokio::spawn(consumer(
            sqs.clone(),
            queue_url.to_owned(),
            store.clone(),
            options.clone(),
            tally.clone(),
            stop.clone(),
        )));
    }
    let snapshot = || (tally.lock().map(|t| t.clone()).unwrap_or_default(), None);
    let stopped_early = || tasks.iter().any(|t| t.is_finished());
    let drain = Drain { sqs, queue_url, dlq_url, timeout: options.timeout, sent };
    let result = until_drained(drain, progress, &snapshot, &stopped_early)
        .await
        .and_then(|()| tally.lock().map(|t| t.clone()).map_err(|_| LocalError::ConsumerPanicked));
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match task.await {
            Ok(Err(e)) if result.is_ok() => return Err(e),
            _ => {}
        }
    }
    result
}
