//! What long operations report while they work: progress values, stack events, failures.

use std::fmt;

use aws_sdk_cloudformation::types::StackStatus;
use serde::Serialize;

use super::*;

/// What a long operation reports while it works; a binary prints each (they implement
/// `Display`), a test may collect them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "progress", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Progress {
    /// A Lambda zip is in the asset bucket (`uploaded`: now; else it was there already).
    Asset {
        name: String,
        bytes: u64,
        url: String,
        uploaded: bool,
    },
    /// The stack exists only as an unexecuted change set; a new one is created.
    ReviewInProgress {
        stack: String,
    },
    CreatingChangeSet {
        stack: String,
        update: bool,
    },
    /// The change set is reviewed: what it changes and what the guard refuses.
    Reviewed(PlannedChange),
    /// One stack event, in the order CloudFormation recorded them.
    StackEvent(StackEvent),
    /// A change set could not be deleted (the outcome stands; the change set is left over).
    ChangeSetLeftOver {
        id: String,
        message: String,
    },
    BucketCreated {
        bucket: String,
    },
    BucketExists {
        bucket: String,
    },
    /// Termination protection was turned on: deleting the stack now takes `destroy --unprotect`.
    Protected {
        stack: String,
    },
    /// The stack policy was set: protecting every stateful resource, or lifted for `lifted`.
    PolicySet {
        stack: String,
        lifted: Vec<String>,
    },
    /// Something that does not change the outcome but should be seen.
    Warning {
        message: String,
    },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Asset { name, bytes, url, uploaded } => write!(
                f,
                "asset {name:<18} {bytes:>9} bytes  {url}  {}",
                if *uploaded { "uploaded" } else { "already there" }
            ),
            Progress::ReviewInProgress { stack } => write!(
                f,
                "stack {stack} exists only as an unexecuted change set (REVIEW_IN_PROGRESS); a new one is created (drop the old with `aws cloudformation delete-stack --stack-name {stack}`)"
            ),
            Progress::CreatingChangeSet { stack, update } => {
                write!(f, "creating a change set for {stack} ({}) ...", if *update { "update" } else { "create" })
            }
            Progress::Reviewed(planned) => write!(f, "\n{}", planned.review),
            Progress::StackEvent(e) => e.fmt(f),
            Progress::ChangeSetLeftOver { id, message } => {
                write!(f, "warning: could not delete change set {id}: {message}")
            }
            Progress::BucketCreated { bucket } => write!(f, "created bucket {bucket}"),
            Progress::BucketExists { bucket } => write!(f, "bucket {bucket} exists and is yours"),
            Progress::Protected { stack } => write!(f, "termination protection turned on for {stack}"),
            Progress::Warning { message } => write!(f, "warning: {message}"),
            Progress::PolicySet { stack, lifted } if lifted.is_empty() => {
                write!(f, "stack policy of {stack} set: replacing or deleting its stateful resources is denied")
            }
            Progress::PolicySet { stack, lifted } => write!(
                f,
                "stack policy of {stack} lifted for {} for this update only (--allow-replace)",
                lifted.join(", ")
            ),
        }
    }
}

/// Where progress goes.
pub type Report<'a> = &'a mut (dyn FnMut(Progress) + Send);

/// One stack event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackEvent {
    pub time: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

impl StackEvent {
    pub(crate) fn failed(&self) -> bool {
        self.status.ends_with("_FAILED")
    }
}

impl fmt::Display for StackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {:<32} {:<34} {}", self.time, self.logical_id, self.resource_type, self.status)?;
        match &self.reason {
            Some(reason) => write!(f, "  {reason}"),
            None => Ok(()),
        }
    }
}

/// How a stack operation ended when it did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackFailure {
    pub stack: String,
    pub status: String,
    /// The first failed resource and its reason.
    pub first_failure: Option<String>,
}

impl fmt::Display for StackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stack {} ended in {}", self.stack, self.status)?;
        if let Some(first) = &self.first_failure {
            write!(f, "\nfirst failure: {first}")?;
        }
        if self.status == StackStatus::RollbackComplete.as_str() {
            write!(
                f,
                "\nthe stack could not be created and must be deleted before the next deploy: `cargo run --bin deploy -- destroy --stack-name {}` (or `aws cloudformation delete-stack --stack-name {}`)",
                self.stack, self.stack
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudformation::PlannedChange;
    use crate::guard;

    #[test]
    fn progress_prints_itself_and_serializes_tagged() {
        let event = StackEvent {
            time: "t".into(),
            logical_id: "MetricsTable".into(),
            resource_type: "AWS::DynamoDB::Table".into(),
            status: "CREATE_FAILED".into(),
            reason: Some("no".into()),
        };
        assert!(event.failed());
        let p = Progress::StackEvent(event);
        assert!(p.to_string().ends_with("CREATE_FAILED  no"), "{p}");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!((v["progress"].as_str(), v["logicalId"].as_str()), (Some("stackEvent"), Some("MetricsTable")));
        let planned = PlannedChange { stack: "s".into(), id: "cs".into(), review: guard::review(vec![]) };
        let v = serde_json::to_value(Progress::Reviewed(planned)).unwrap();
        assert_eq!((v["progress"].as_str(), v["id"].as_str()), (Some("reviewed"), Some("cs")));
        let asset = Progress::Asset { name: "f".into(), bytes: 1, url: "s3://b/k".into(), uploaded: false };
        assert_eq!(serde_json::to_value(&asset).unwrap()["progress"], "asset");
        assert!(asset.to_string().ends_with("s3://b/k  already there"), "{asset}");
    }
}
