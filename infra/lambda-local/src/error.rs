use std::path::PathBuf;

/// What stops a local function or mapping from running at all (a function's own failures are
/// [`crate::Outcome`]s, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start {function}'s bootstrap {} (build it for this machine: cargo build --bins)", binary.display())]
    Spawn { function: String, binary: PathBuf, source: std::io::Error },
    #[error("cannot open a Runtime API endpoint for {function} on 127.0.0.1")]
    Listen { function: String, source: std::io::Error },
    #[error("cannot serve the Invoke API on 127.0.0.1:{port}")]
    Serve { port: u16, source: std::io::Error },
    #[error("SQS {action} on {queue} failed: {message}")]
    Sqs { action: &'static str, queue: String, message: String },
    #[error("the request payload for {function} is {size} bytes; Lambda accepts at most {max}", max = crate::MAX_PAYLOAD_BYTES)]
    RequestTooLarge { function: String, size: usize },
    #[error("a poller of {function} stopped: {why}")]
    Poller { function: String, why: String },
}
