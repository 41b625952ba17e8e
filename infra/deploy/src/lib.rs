//! Deploying a synthesized stack with CloudFormation, in the spirit of the CDK CLI: publish the
//! Lambda zips under their SHA-256, create a change set, review it with the data-safety
//! [`guard`], execute it while reporting stack events, and return the outputs. The library
//! returns data ([`deployer::Deployer`]) and knows no app: the caller hands it a
//! [`deployer::Target`]. The binaries (crate `deploy-cli`) print.

pub mod assets;
pub mod cloudformation;
pub mod deployer;
pub mod error;
pub mod guard;
pub mod offline;
pub mod queue;
pub mod redrive;
pub mod status;
