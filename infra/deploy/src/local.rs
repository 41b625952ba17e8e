//! The workshop's pipeline on a local endpoint, where Lambda cannot run code: the event source
//! mapping's settings are read from the stack's handles and PublishMetrics' logic consumes the queue
//! under them (batch size, batching window, reserved concurrency as the number of consumers),
//! deleting only what succeeded, with progress lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use cfn::constructs::lambda::EventSourceMapping;
use publish_metrics::{process, Invocation, RetryPolicy, Store};

/// How Lambda would poll the queue, as the template configures it.
#[derive(Clone, Debug, PartialEq)]
pub struct MappingSettings {
    pub batch_size: u32,
    pub batching_window: Duration,
    /// The function's reserved concurrency: at most this many batches at once.
    pub consumers: u32,
    pub visibility_timeout_secs: u32,
    /// The function's timeout: each batch's deadline.
    pub function_timeout: Duration,
}

/// The settings of PublishMetrics' SQS event source, read from the stack's handles.
pub fn mapping_settings(mapping: &EventSourceMapping) -> MappingSettings {
    let function = mapping.function();
    MappingSettings {
        batch_size: mapping.batch_size(),
        batching_window: Duration::from_secs(u64::from(mapping.batching_window_secs())),
        // At most the mapping's maximum concurrency and the function's reserved concurrency;
        // with neither, Lambda starts with five pollers.
        consumers: [mapping.max_concurrency(), function.reserved_concurrency()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(5),
        visibility_timeout_secs: mapping.queue().visibility_timeout_secs(),
        function_timeout: Duration::from_secs(u64::from(function.timeout_secs())),
    }
}

/// Counts so far, shared by the consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub batches: usize,
    pub counted: usize,
    pub duplicates: usize,
    /// Records returned as failures (bad or not written); they come back after the
    /// visibility timeout, and poison ones end in the DLQ.
    pub failures: usize,
    pub transactions: usize,
    pub transaction_items: usize,
    /// Write capacity consumed, by DynamoDB's size rules.
    pub wcu: u64,
}

/// Queue depth as SQS reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub waiting: u64,
    pub in_flight: u64,
}

pub async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Depth> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .context("cannot read the queue's depth")?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let get = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Depth {
        waiting: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// How a local run consumes the queue.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    pub settings: MappingSettings,
    /// Multiplies the batching window and the visibility timeout, for a quick demo.
    pub time_scale: f64,
    /// Give up after this long.
    pub timeout: Duration,
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
) -> Result<()> {
    let window = options.settings.batching_window.mul_f64(options.time_scale);
    let visibility = ((f64::from(options.settings.visibility_timeout_secs) * options.time_scale).ceil() as i32).max(1);
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
                .context("cannot receive from the queue")?;
            let got = out.messages().len();
            messages.extend(out.messages().iter().cloned());
            if started.elapsed() >= window || (got == 0 && !messages.is_empty() && window.is_zero()) {
                break;
            }
        }
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        for m in &messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            event.records.push(record);
        }
        let invocation = Invocation::with_time_left(options.settings.function_timeout);
        let outcome = process(store.as_ref(), event, RetryPolicy::default(), invocation).await;
        let failed: Vec<String> =
            outcome.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        let done: Vec<_> =
            messages.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())).collect();
        for chunk in done.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            sqs.delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("cannot delete messages")?;
        }
        let mut t = tally.lock().map_err(|_| anyhow!("a consumer panicked"))?;
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

/// Where the queues stand, reported once a second while [`consume`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub sent: usize,
    pub queue: Depth,
    pub dead_letters: Depth,
    pub tally: Tally,
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} | waiting {} | in flight {} | counted {} | duplicates {} | DLQ {} | batches {}",
            self.sent,
            self.queue.waiting,
            self.queue.in_flight,
            self.tally.counted,
            self.tally.duplicates,
            self.dead_letters.waiting,
            self.tally.batches
        )
    }
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
) -> Result<Tally> {
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
    let started = Instant::now();
    let mut quiet = 0;
    let result = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queue = depth(sqs, queue_url).await?;
        let dlq = depth(sqs, dlq_url).await?;
        let t = tally.lock().map_err(|_| anyhow!("a consumer panicked"))?.clone();
        progress(&Standing { sent, queue, dead_letters: dlq, tally: t.clone() });
        if tasks.iter().any(|t| t.is_finished()) {
            break Err(anyhow!("a consumer stopped early"));
        }
        quiet = if queue.waiting + queue.in_flight == 0 { quiet + 1 } else { 0 };
        if quiet >= 2 {
            break Ok(t);
        }
        if started.elapsed() > options.timeout {
            break Err(anyhow!("the queue was not drained within {:?}", options.timeout));
        }
    };
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match task.await {
            Ok(Err(e)) if result.is_ok() => return Err(e),
            _ => {}
        }
    }
    result
}

/// Every counter of the metrics table: sort key -> `val`.
pub async fn counters(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<std::collections::BTreeMap<String, u64>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut out = std::collections::BTreeMap::new();
    let mut start = None;
    loop {
        let page = ddb
            .query()
            .table_name(table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(order_events::AGGREGATE_PK.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("cannot query {table}"))?;
        for item in page.items() {
            let sk = item.get("SK").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let val = item.get("val").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
            out.insert(sk, val);
        }
        match page.last_evaluated_key() {
            Some(k) => start = Some(k.clone()),
            None => return Ok(out),
        }
    }
}

/// A moto server this process started; stopped when dropped (Ctrl-C included, as the runtime
/// unwinds).
pub struct MotoServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `server` (a `moto_server` executable) on 127.0.0.1 and waits until it answers.
    pub fn start(server: &std::path::Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())?.port();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!("cannot start {} (install moto[server], or pass --endpoint-url)", server.display())
            })?;
        let mut moto = MotoServer { child, endpoint: format!("http://127.0.0.1:{port}") };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                return Err(anyhow!("{} exited with {status}", server.display()));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(anyhow!("moto did not answer on {addr} within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops moto's own poller for the function's mappings: it would take messages off the queue
/// to invoke a function it cannot run.
pub async fn disable_mappings(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<usize> {
    let out =
        lambda.list_event_source_mappings().function_name(function).send().await.context("cannot list the mappings")?;
    let mut n = 0;
    for m in out.event_source_mappings() {
        if let Some(uuid) = m.uuid() {
            lambda
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(false)
                .send()
                .await
                .context("cannot disable a mapping")?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_stack() {
        let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
        let s = mapping_settings(stack.mapping());
        assert_eq!(
            s,
            MappingSettings {
                batch_size: 10,
                batching_window: Duration::from_secs(30),
                consumers: 1,
                visibility_timeout_secs: 210,
                function_timeout: Duration::from_secs(30),
            }
        );
        let props = metrics_stack::MetricsStackProps {
            publish_reserved_concurrency: 3,
            batch_size: 50,
            batching_window_secs: 5,
            ..Default::default()
        };
        let s = mapping_settings(metrics_stack::metrics_stack(&props).unwrap().mapping());
        assert_eq!((s.batch_size, s.batching_window, s.consumers), (50, Duration::from_secs(5), 3));
    }
}
