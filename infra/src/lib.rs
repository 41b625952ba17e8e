//! The construct library and the Serverlesspresso metrics stack.
//!
//! Pipeline: [`metrics`] describes the stack with [`constructs`], which validate and render
//! into the [`template`] model; [`synth`] serializes it and writes `synth-out/`.

pub mod assets;
pub mod constructs;
pub mod diagram;
pub mod error;
pub mod metrics;
pub mod synth;
pub mod template;

pub use error::{Error, Result};
