//! The library's typed errors: every one names the construct, the property and the value at fault.

use std::fmt;
use std::panic::Location;

/// Where a construct was declared: its kind and the source line that built it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub kind: crate::constructs::Kind,
    pub location: &'static Location<'static>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.kind, self.location.file(), self.location.line())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("invalid logical ID `{id}`: {reason}")]
    InvalidLogicalId { id: String, reason: &'static str },

    #[error("logical ID `{id}` is used twice: first by {first}, then by {second}")]
    DuplicateLogicalId { id: String, first: Place, second: Place },

    /// A property value outside what AWS accepts.
    #[error("{construct}: {property} = {value} is invalid: {reason}")]
    InvalidProperty { construct: String, property: &'static str, value: String, reason: String },

    /// An event pattern EventBridge would refuse.
    #[error("{construct}: EventPattern is invalid")]
    InvalidPattern {
        construct: String,
        #[source]
        source: crate::constructs::events::PatternError,
    },

    /// A construct handle used in a stack that did not create it.
    #[error("{construct} belongs to another stack; pass a handle built in stack `{stack}`")]
    ForeignConstruct { construct: String, stack: String },

    #[error("cannot serialize the template: {0}")]
    Serialize(String),
}

impl Error {
    /// An [`Error::InvalidProperty`] for `construct` (as `kind \`id\``).
    pub fn invalid(
        construct: impl fmt::Display,
        property: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidProperty {
            construct: construct.to_string(),
            property,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
