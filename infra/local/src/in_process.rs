//! The fast mode: PublishMetrics' logic consumes the queue in this process under the mapping's
//! settings (batch size, batching window, concurrency), deleting only what succeeded. No
//! process, no Runtime API, no Lambda scaling: used by tests that inject faults into the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_events::capacity::WriteBudget;
use publish_metrics::{process, Invocation, Pacer, RetryPolicy, Spacing, Store};

use super::error::aws;
use super::{until_drained, Drain, LocalError, MappingSettings, OncePerSecond, Standing, Tally};

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
        t.bad += outcome.bad.len();
        t.failed += outcome.failed.len();
        t.transactions += outcome.transactions.len();
        t.transaction_items += outcome.transactions.iter().sum::<usize>();
        t.wcu += outcome.wcu;
        t.throttled_writes += outcome.throttled as u64;
        t.pacing_wait_ms += outcome.paced.as_millis() as u64;
    }
    Ok(())
}

/// The consumers while they run.
pub struct InProcess {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), LocalError>>>,
}

/// Starts `options.settings.consumers` consumers of `queue_url`.
pub fn start<S: Store + Send + Sync + 'static>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    store: Arc<S>,
    options: &ConsumeOptions,
) -> InProcess {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..options.settings.consumers)
        .map(|_| {
            tokio::spawn(consumer(
                sqs.clone(),
                queue_url.to_owned(),
                store.clone(),
                options.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();
    InProcess { tally, stop, tasks }
}

impl InProcess {
    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Whether a consumer ended before being asked to (an SQS call failed for good).
    pub fn stopped_early(&self) -> bool {
        self.tasks.iter().any(|t| t.is_finished())
    }

    /// Stops the consumers after their current batch; the final counts, or the first error.
    pub async fn finish(self) -> Result<Tally, LocalError> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.map_err(|_| LocalError::ConsumerPanicked)??;
        }
        self.tally.lock().map(|t| t.clone()).map_err(|_| LocalError::ConsumerPanicked)
    }
}

/// Consumes `queue_url` until it is empty, reporting where things stand every second; the
/// final counts.
pub async fn consume<S: Store + Send + Sync + 'static>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dlq_url: &str,
    store: Arc<S>,
    options: &ConsumeOptions,
    sent: usize,
    progress: &mut (dyn FnMut(&Standing) + Send),
) -> Result<Tally, LocalError> {
    let running = start(sqs, queue_url, store, options);
    let drain = Drain { sqs, queue_url, dlq_url, timeout: options.timeout };
    let mut report = OncePerSecond::new();
    let drained = until_drained(drain, &mut |queue, dead_letters| {
        if report.due() {
            progress(&Standing { sent, queue, dead_letters, tally: running.tally(), lambda: None, table: None });
        }
        if running.stopped_early() {
            return Err(LocalError::ConsumerStopped);
        }
        Ok(())
    })
    .await;
    let tally = running.finish().await;
    drained?;
    tally
}
