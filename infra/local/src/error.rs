use std::path::PathBuf;

use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// What stops a local run, each naming what failed and, where there is one, the way out.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A call to the local endpoint failed.
    #[error("{action}: {message}")]
    Aws { action: String, message: String },
    #[error("cannot start {} (install moto[server], or pass --endpoint-url)", server.display())]
    MotoStart { server: PathBuf, source: std::io::Error },
    #[error("{} exited with {status}", server.display())]
    MotoExited { server: PathBuf, status: String },
    #[error("moto did not answer on {addr} within 60 s")]
    MotoSilent { addr: String },
    #[error("a consumer stopped early")]
    ConsumerStopped,
    #[error("a consumer panicked")]
    ConsumerPanicked,
    #[error("the queue was not drained within {0:?}")]
    NotDrained(Duration),
    /// The deployed bootstrap could not be taken out of its zip.
    #[error("{0}")]
    Artifact(String),
    /// A what-if AWS would refuse.
    #[error("{0}")]
    Refused(String),
    /// A template value the local run cannot work out.
    #[error("{0}")]
    Unresolved(String),
    #[error("{function}'s {variable}: {why}")]
    Environment { function: String, variable: String, why: String },
    #[error("{0}: its code is not built from this workspace")]
    NotBuiltHere(String),
    #[error(transparent)]
    Lambda(#[from] lambda_local::Error),
    /// A deploy-library call (the stack's resources, a queue's depth) failed.
    #[error(transparent)]
    Deploy(#[from] deploy::error::DeployError),
    /// The app's stack could not be built.
    #[error("the stack is invalid")]
    Stack(#[from] cfn::error::Error),
    #[error("EventsLoadTest {0}")]
    LoadTest(String),
    #[error("building the handlers for this machine failed: {0}")]
    Build(String),
    #[error("the local deploy did not succeed: {0}")]
    Deployed(String),
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot draw the graphs: {0}")]
    Graph(String),
    /// The table's counters could not be read.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// The DynamoDB throughput proxy could not start.
    #[error("the DynamoDB throughput proxy: {0}")]
    Throughput(String),
}

/// Maps an SDK error to [`LocalError::Aws`], read as every SDK error is ([`connection::sdk_error`]).
pub(crate) fn aws<E>(action: impl Into<String>) -> impl FnOnce(SdkError<E, HttpResponse>) -> LocalError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let action = action.into();
    move |e| LocalError::Aws { action, message: connection::sdk_error(&e) }
}
