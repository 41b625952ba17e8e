//! The deploy library's typed errors. Each says what failed and, where one exists, the next
//! step; binaries add context with anyhow and print them.

use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};

use crate::status::Blocker;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// An AWS call failed: `what` was being done, `message` is the service's answer.
    #[error("cannot {what}: {message}")]
    Aws { what: String, message: String },
    /// The stack is in a state no deploy starts from; the blocker names the next command.
    #[error("{0}")]
    Blocked(Blocker),
    /// A flag or option the command cannot use.
    #[error("{0}")]
    Usage(String),
    #[error(
        "stack {0} has termination protection: pass --unprotect to turn it off and delete it (or `aws cloudformation update-termination-protection --no-enable-termination-protection --stack-name {0}`)"
    )]
    Protected(String),
    #[error("there is no stack {0}")]
    NoStack(String),
    /// `destroy` of a stack without the app's tag, unforced.
    #[error(
        "refused: stack {stack} does not carry the tag {key}={value} that this tool's deploys set, so it may not be this app's; pass --force to delete it anyway"
    )]
    NotOurs { stack: String, key: String, value: String },
    #[error("stack {0} shows no event of its executed change set a minute later (it is still REVIEW_IN_PROGRESS, or in its status from before): the change set did not start (see `aws cloudformation describe-change-set`)")]
    NotStarted(String),
    /// A new stack would create a retained resource that exists already.
    #[error(
        "{logical_id} ({name}) exists already, kept when an earlier {stack} was destroyed (DeletionPolicy: Retain), so a new stack cannot create it. Adopt it, data included: deploy again with --import-existing. Or, to start empty, give it another name in the app (the old one stays, with its data)"
    )]
    RetainedExists { stack: String, logical_id: String, name: String },
    #[error("stack {0} disappeared while it was being changed")]
    Disappeared(String),
    #[error("change set for {stack} failed: {reason}")]
    ChangeSetFailed { stack: String, reason: String },
    #[error("change set {0} was not ready after 10 minutes")]
    ChangeSetTimeout(String),
    #[error(
        "the template is {0} bytes, over CloudFormation's 51200 for an inline template: pass --asset-bucket to upload it"
    )]
    TemplateTooLarge(usize),
    #[error("the deployed template of {stack} is neither JSON nor long-form YAML: {message}")]
    DeployedTemplate { stack: String, message: String },
    /// The object at a content-addressed key is not the bytes that key names.
    #[error(
        "s3://{bucket}/{key} holds other bytes ({found}, expected {expected}): something else wrote that key; remove it or use another bucket"
    )]
    ForeignObject { bucket: String, key: String, found: String, expected: String },
    #[error(
        "cannot reach s3://{bucket}/{key}: {message}\n(create the bucket with `cargo run --bin deploy -- bootstrap --asset-bucket {bucket}`)"
    )]
    NoBucket { bucket: String, key: String, message: String },
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
    #[error("the stack is invalid")]
    Stack(#[from] cfn::error::Error),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A prepared change set `--execute` may not run.
    #[error("refused to execute change set {change_set}: {why}")]
    ChangeSetUnusable { change_set: String, why: String },
    /// A blocking task (packaging a zip) panicked or was cancelled.
    #[error("{0} stopped before it finished")]
    Interrupted(String),
}

impl DeployError {
    /// An AWS call's failure, with what was being done.
    pub fn aws<E: std::error::Error + ProvideErrorMetadata + 'static>(
        what: impl Into<String>,
        e: &SdkError<E, HttpResponse>,
    ) -> Self {
        DeployError::Aws { what: what.into(), message: sdk(e) }
    }
}

pub use connection::sdk_error as sdk;

/// Whether CloudFormation's answer means "no such stack". It has no error code of its own:
/// AWS answers `ValidationError` with "Stack with id NAME does not exist", as cloudformatious
/// and the CDK CLI read it too.
pub fn is_missing_stack<E: std::error::Error + ProvideErrorMetadata + 'static>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.ends_with("does not exist"))
}
