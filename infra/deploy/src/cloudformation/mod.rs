//! The CloudFormation and S3 calls of deploy, diff, destroy, outputs and bootstrap, split along
//! CloudFormation's seams. They return data and typed errors and print nothing: progress goes to
//! the caller's [`Progress`] callback.

mod bucket;
mod change_set;
mod progress;
mod stack;
mod template_diff;

pub use self::bucket::*;
pub use self::change_set::*;
pub use self::progress::*;
pub use self::stack::*;
pub use self::template_diff::*;
pub use crate::error::sdk;
