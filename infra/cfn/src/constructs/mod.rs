//! Constructs: one module per AWS service, each a builder with safe defaults that validates
//! against AWS's documented limits and renders into the [template model](crate::template).
//! Handles returned by `build` wire constructs together and carry their grants.

pub mod capacity;
pub mod cloudwatch;
pub mod dynamodb;
pub mod events;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod sns;
pub mod sqs;
mod stack;
pub mod validate;

pub use stack::{Acknowledgement, ConstructRef, Kind, Stack, TakesResourcePolicy, Warning};
