//! Stack statuses as predicates, instead of matching their names: settled or not, success or
//! not, and what blocks a deploy (with the exact next command).

use std::fmt;

use aws_sdk_cloudformation::types::StackStatus;

/// What a stack status means for a deploy.
pub trait StackState {
    /// `Some(true)` for a settled success, `Some(false)` for a settled failure, `None` while
    /// CloudFormation is still working.
    fn settled(&self) -> Option<bool>;
    /// CloudFormation is working on the stack.
    fn in_progress(&self) -> bool;
    /// The stack exists with resources (not only an unexecuted change set, not deleted).
    fn deployed(&self) -> bool;
}

impl StackState for StackStatus {
    fn settled(&self) -> Option<bool> {
        use StackStatus as S;
        match self {
            S::CreateComplete | S::UpdateComplete | S::DeleteComplete | S::ImportComplete => Some(true),
            S::CreateFailed
            | S::RollbackComplete
            | S::RollbackFailed
            | S::DeleteFailed
            | S::UpdateRollbackComplete
            | S::UpdateRollbackFailed
            | S::UpdateFailed
            | S::ImportRollbackComplete
            | S::ImportRollbackFailed => Some(false),
            // Not settled either: REVIEW_IN_PROGRESS turns into CREATE_IN_PROGRESS once the
            // change set executes, and statuses AWS adds later are taken as still working.
            _ => None,
        }
    }

    fn in_progress(&self) -> bool {
        // REVIEW_IN_PROGRESS waits for a person (to execute a change set), not for CloudFormation.
        self.settled().is_none() && *self != StackStatus::ReviewInProgress
    }

    fn deployed(&self) -> bool {
        !matches!(self, StackStatus::ReviewInProgress | StackStatus::DeleteComplete)
    }
}

/// Why a stack cannot be deployed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// Its first create failed: only deleting it helps.
    RollbackComplete {
        stack: String,
    },
    UpdateRollbackFailed {
        stack: String,
    },
    DeleteFailed {
        stack: String,
    },
    /// CloudFormation is working on it.
    Busy {
        stack: String,
        status: String,
    },
}

impl Blocker {
    /// What keeps a stack in `status` from being deployed now; `None` when nothing does.
    pub fn of(status: &StackStatus, stack: &str) -> Option<Blocker> {
        let stack = stack.to_owned();
        match status {
            StackStatus::RollbackComplete => Some(Blocker::RollbackComplete { stack }),
            StackStatus::UpdateRollbackFailed => Some(Blocker::UpdateRollbackFailed { stack }),
            StackStatus::DeleteFailed => Some(Blocker::DeleteFailed { stack }),
            s if s.in_progress() => Some(Blocker::Busy { stack, status: s.as_str().to_owned() }),
            _ => None,
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::RollbackComplete { stack } => write!(
                f,
                "stack {stack} is in ROLLBACK_COMPLETE (its first create failed) and cannot be updated: delete it with `cargo run --bin deploy -- destroy --stack-name {stack}`, then deploy again"
            ),
            Blocker::UpdateRollbackFailed { stack } => write!(
                f,
                "stack {stack} is in UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback --stack-name {stack}` (with `--resources-to-skip ID` for a resource that cannot roll back), wait for UPDATE_ROLLBACK_COMPLETE, then deploy again"
            ),
            Blocker::DeleteFailed { stack } => write!(
                f,
                "stack {stack} is in DELETE_FAILED: finish with `cargo run --bin deploy -- destroy --stack-name {stack}` (see the failed resource in its events), then deploy again"
            ),
            Blocker::Busy { stack, status } => write!(
                f,
                "stack {stack} is busy ({status}): wait until it settles (`aws cloudformation wait stack-update-complete --stack-name {stack}` or watch its events), then deploy again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_statuses() {
        assert_eq!(StackStatus::CreateComplete.settled(), Some(true));
        assert_eq!(StackStatus::RollbackComplete.settled(), Some(false));
        assert_eq!(StackStatus::UpdateRollbackComplete.settled(), Some(false));
        assert_eq!(StackStatus::CreateInProgress.settled(), None);
        assert!(StackStatus::UpdateCompleteCleanupInProgress.in_progress());
        assert!(!StackStatus::ReviewInProgress.in_progress(), "waits for a person");
        assert!(!StackStatus::ReviewInProgress.deployed());
        assert!(StackStatus::UpdateRollbackComplete.deployed());
        // A status this SDK does not know is taken as CloudFormation still working.
        assert!(StackStatus::from("SOMETHING_NEW").in_progress());
    }

    #[test]
    fn stuck_stacks_get_the_exact_next_command() {
        let says = |s: StackStatus| Blocker::of(&s, "st").map(|b| b.to_string()).unwrap_or_default();
        assert!(says(StackStatus::RollbackComplete).contains("deploy -- destroy --stack-name st"));
        assert!(says(StackStatus::UpdateRollbackFailed)
            .contains("aws cloudformation continue-update-rollback --stack-name st"));
        assert!(says(StackStatus::DeleteFailed).contains("destroy --stack-name st"));
        assert!(says(StackStatus::UpdateInProgress).contains("busy (UPDATE_IN_PROGRESS)"));
        for fine in [
            StackStatus::CreateComplete,
            StackStatus::UpdateComplete,
            StackStatus::UpdateRollbackComplete,
            StackStatus::ReviewInProgress,
        ] {
            assert_eq!(Blocker::of(&fine, "st"), None, "{fine:?}");
        }
    }
}
