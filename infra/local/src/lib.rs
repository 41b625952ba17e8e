//! The workshop's pipeline on a local endpoint: the stack deployed to moto (or another local
//! endpoint), the handlers' real binaries run by [`lambda_local`] under the template's settings
//! ([`lambda`]), or — the fast mode some tests use — PublishMetrics' logic in this process
//! ([`in_process`]); progress while the queue drains, and the table's counters at the end.

mod error;
pub mod in_process;
pub mod lambda;
pub mod throughput;

use error::aws;
pub use error::LocalError;

use deploy::queue::{depth, Depth};

use std::time::{Duration, Instant};

use cfn::constructs::lambda::EventSourceMapping;

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

/// Counts so far: from the in-process consumers, or from PublishMetrics' EMF log lines.
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

/// What Lambda would report of the function's invocations (real binaries only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invocations {
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
}

/// Where the queues stand, reported once a second while the queue drains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub sent: usize,
    pub queue: Depth,
    pub dead_letters: Depth,
    pub tally: Tally,
    /// With the real binaries.
    pub lambda: Option<Invocations>,
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
            write!(f, " | invocations {} | errors {} | timeouts {}", l.invocations, l.errors, l.timeouts)?;
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
    pub sent: usize,
}

/// Waits until the queue has been empty (nothing waiting, nothing in flight) for two checks
/// in a row, reporting where things stand every second; fails at the timeout, or when
/// `stopped_early` says a consumer ended.
pub(crate) async fn until_drained(
    drain: Drain<'_>,
    progress: &mut (dyn FnMut(&Standing) + Send),
    snapshot: &(dyn Fn() -> (Tally, Option<Invocations>) + Sync),
    stopped_early: &(dyn Fn() -> bool + Sync),
) -> Result<(), LocalError> {
    let Drain { sqs, queue_url, dlq_url, timeout, sent } = drain;
    let started = Instant::now();
    let mut quiet = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queue = depth(sqs, queue_url).await?;
        let dead_letters = depth(sqs, dlq_url).await?;
        let (tally, lambda) = snapshot();
        progress(&Standing { sent, queue, dead_letters, tally, lambda });
        if stopped_early() {
            return Err(LocalError::ConsumerStopped);
        }
        quiet = if queue.waiting + queue.in_flight == 0 { quiet + 1 } else { 0 };
        if quiet >= 2 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(LocalError::NotDrained(timeout));
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
    pub fn start(server: &std::path::Path) -> Result<Self, LocalError> {
        let start = |source| LocalError::MotoStart { server: server.to_owned(), source };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(start)?.port();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(start)?;
        let mut moto = MotoServer { child, endpoint: format!("http://127.0.0.1:{port}") };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto.child.try_wait().map_err(start)? {
                return Err(LocalError::MotoExited { server: server.to_owned(), status: status.to_string() });
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(LocalError::MotoSilent { addr: addr.to_string() });
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
pub async fn disable_mappings(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<usize, LocalError> {
    let out = lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .map_err(aws("cannot list the mappings"))?;
    let mut n = 0;
    for m in out.event_source_mappings() {
        if let Some(uuid) = m.uuid() {
            lambda
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(false)
                .send()
                .await
                .map_err(aws("cannot disable a mapping"))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moto_that_cannot_start_is_named_with_the_way_out() {
        let Err(err) = MotoServer::start(std::path::Path::new("/nonexistent/moto_server")) else {
            panic!("started a server that does not exist")
        };
        let text = err.to_string();
        assert!(matches!(err, LocalError::MotoStart { .. }), "{err:?}");
        assert!(text.contains("/nonexistent/moto_server") && text.contains("--endpoint-url"), "{text}");
    }

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
        // Reserved concurrency 0 is a throttled function: nothing polls.
        let props = metrics_stack::MetricsStackProps { publish_reserved_concurrency: 0, ..Default::default() };
        assert_eq!(mapping_settings(metrics_stack::metrics_stack(&props).unwrap().mapping()).consumers, 0);
    }
}
