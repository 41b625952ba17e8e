//! Lambda without Lambda: runs a function's real `bootstrap` binary as a child process behind
//! an embedded Runtime API, with the limits Lambda applies (timeout, restarts after a crash or
//! a timeout, 6 MB responses), and drives it from an SQS queue as an event source mapping
//! would (batch size, batching window, concurrency, `ReportBatchItemFailures`), or behind
//! Lambda's own Invoke API ([`invoke_api`]) for the SDK and the AWS CLI.
//!
//! Nothing here prints: logs and results come back as values ([`LogLine`], [`Invocation`],
//! [`MappingStats`]).

mod error;
mod function;
mod http;
pub mod invoke_api;
mod runtime_api;
pub mod sqs;

pub use error::Error;
pub use function::{
    new_request_id, Credentials, FunctionConfig, Instance, Invocation, InvokeContext, Launcher, LogLine, LogSink,
    Outcome, Stream,
};
pub use runtime_api::FunctionError;

/// Largest synchronous request payload Lambda accepts: 6 MB (Lambda API Reference, "Invoke";
/// Lambda Developer Guide, "Lambda quotas").
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Concurrent executions an account may run across its functions without reserved concurrency
/// (Lambda Developer Guide, "Lambda quotas": 1,000 per Region by default).
pub const ACCOUNT_CONCURRENCY: u32 = 1_000;

/// Largest response a runtime may post: 6 MiB and 100 bytes, the figure in Lambda's own refusal
/// ("exceeded maximum allowed payload size (6291556 bytes)").
pub const MAX_RESPONSE_BYTES: usize = MAX_PAYLOAD_BYTES + 100;
