//! The construct library: a CloudFormation [`template`] model with typed intrinsics,
//! [`constructs`] (one module per AWS service: builders that validate against AWS's documented
//! limits, handles that wire them together, grants), and [`synth`]: rendering stacks into files,
//! atomically, or checking that files are current. Nothing here knows the app it describes.

pub mod constructs;
pub mod diagram;
pub mod error;
pub mod synth;
pub mod template;

pub use error::{Error, Result};
