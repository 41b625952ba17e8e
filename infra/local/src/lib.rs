//! The workshop's pipeline on a local endpoint, as a library: [`run`] deploys the stack to moto
//! (or another local endpoint, [`environment`]), puts DynamoDB's provisioned throughput between
//! the functions and the endpoint ([`throughput`]), runs the load test and drains the queue with
//! the handlers' real binaries under the template's mapping ([`functions`], through
//! `lambda-local`) or — the fast mode — PublishMetrics' logic in this process ([`in_process`]),
//! records what CloudWatch would graph ([`series`]), draws the dashboard's widgets
//! ([`graphs`]) and returns a [`RunSummary`]. It prints nothing: progress is reported as
//! [`Event`]s. [`serve::serve`] puts the same functions behind Lambda's Invoke API instead.

pub mod artifact;
pub mod environment;
mod error;
pub mod functions;
pub mod graphs;
pub mod in_process;
pub mod logs;
mod run;
pub mod series;
pub mod serve;
pub mod throughput;

pub use environment::{disable_mappings, MotoServer};
pub use error::LocalError;
pub use run::{run, Driver, Event, MetricRow, Orders, Overrides, RunOptions, RunSummary};

use deploy::queue::{depth, Depth};

use std::time::{Duration, Instant};

use cfn::constructs::lambda::EventSourceMapping;
use serde::Serialize;

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
            .unwrap_or(EventSourceMapping::SQS_INITIAL_BATCHES),
        visibility_timeout_secs: mapping.queue().visibility_timeout_secs(),
        function_timeout: Duration::from_secs(u64::from(function.timeout_secs())),
    }
}

/// PublishMetrics' counts so far: from the in-process consumers, or from its EMF log lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub batches: usize,
    pub counted: usize,
    pub duplicates: usize,
    /// Records that can never be counted: they come back, then go to the DLQ.
    pub bad: usize,
    /// Records whose write failed: they come back after the visibility timeout.
    pub failed: usize,
    pub transactions: usize,
    pub transaction_items: usize,
    /// Write capacity consumed, by the handler's own reckoning of DynamoDB's size rules.
    pub wcu: u64,
    /// Write attempts the table refused for throughput.
    pub throttled_writes: u64,
    /// Time spent waiting for the write budget.
    pub pacing_wait_ms: u64,
}

/// What Lambda would report of the function so far (real binaries only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocations {
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Invocations refused for the function's concurrency.
    pub throttles: u64,
    /// The mapping's pollers now.
    pub pollers: u32,
    /// The highest receive count of any message.
    pub max_receive_count: u64,
}

/// Where the run stands, reported once a second while the queue drains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub sent: usize,
    pub queue: Depth,
    pub dead_letters: Depth,
    pub tally: Tally,
    /// With the real binaries.
    pub lambda: Option<Invocations>,
    /// WCU the table consumed and refused so far.
    pub table: Option<(u64, u64)>,
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
        )?;
        if let Some(l) = &self.lambda {
            write!(
                f,
                " | invocations {} | errors {} | timeouts {} | throttles {} | receives <= {}",
                l.invocations, l.errors, l.timeouts, l.throttles, l.max_receive_count
            )?;
        }
        if let Some((consumed, throttled)) = self.table {
            write!(f, " | WCU {consumed} | throttled WCU {throttled}")?;
        }
        Ok(())
    }
}

/// The queues a drain watches, and for how long.
pub(crate) struct Drain<'a> {
    pub sqs: &'a aws_sdk_sqs::Client,
    pub queue_url: &'a str,
    pub dlq_url: &'a str,
    pub timeout: Duration,
}

/// How often a drain reads the queues, and how long the queue must stay empty to be drained.
const DRAIN_TICK: Duration = Duration::from_millis(250);
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// Checks the queues four times a second until the queue has stayed empty (nothing waiting,
/// nothing in flight) for two seconds; `each_check` sees the queue's and the DLQ's depth and
/// may end the drain with an error (a consumer that stopped). Fails at the timeout. Returns
/// when the queue was first seen empty for good.
pub(crate) async fn until_drained(
    drain: Drain<'_>,
    each_check: &mut (dyn FnMut(Depth, Depth) -> Result<(), LocalError> + Send),
) -> Result<Instant, LocalError> {
    let Drain { sqs, queue_url, dlq_url, timeout } = drain;
    let started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(DRAIN_TICK).await;
        let queue = depth(sqs, queue_url).await?;
        let dead_letters = depth(sqs, dlq_url).await?;
        each_check(queue, dead_letters)?;
        if queue.waiting + queue.in_flight == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DRAIN_QUIET {
                return Ok(since);
            }
        } else {
            empty_since = None;
        }
        if started.elapsed() > timeout {
            return Err(LocalError::NotDrained(timeout));
        }
    }
}

/// Lets through one call a second (the progress line), from `every` calls four times as often.
pub(crate) struct OncePerSecond(Option<Instant>);

impl OncePerSecond {
    pub fn new() -> Self {
        OncePerSecond(None)
    }

    pub fn due(&mut self) -> bool {
        let due = self.0.is_none_or(|last| last.elapsed() >= Duration::from_millis(990));
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
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
            // A full batch of 50 at a third of 5 WCU/s: 180 s of writing.
            publish_timeout_secs: 190,
            batch_size: 50,
            batching_window_secs: 5,
            ..Default::default()
        };
        let s = mapping_settings(metrics_stack::metrics_stack(&props).unwrap().mapping());
        assert_eq!((s.batch_size, s.batching_window, s.consumers), (50, Duration::from_secs(5), 3));
        // Reserved concurrency 0 is a throttled function: nothing polls.
        let props = metrics_stack::MetricsStackProps { publish_reserved_concurrency: 0, ..Default::default() };
        assert_eq!(mapping_settings(metrics_stack::metrics_stack(&props).unwrap().mapping()).consumers, 0);
    }

    #[test]
    fn the_progress_line_says_what_lambda_and_the_table_did() {
        let s = Standing {
            sent: 300,
            queue: Depth { waiting: 250, in_flight: 50 },
            dead_letters: Depth::default(),
            tally: Tally { counted: 10, batches: 1, ..Default::default() },
            lambda: Some(Invocations { invocations: 1, throttles: 4, max_receive_count: 1, ..Default::default() }),
            table: Some((28, 0)),
        };
        assert_eq!(
            s.to_string(),
            "sent 300 | waiting 250 | in flight 50 | counted 10 | duplicates 0 | DLQ 0 | batches 1 | invocations 1 | errors 0 | timeouts 0 | throttles 4 | receives <= 1 | WCU 28 | throttled WCU 0"
        );
    }
}
