//! Which of the app's stacks a tool acts on, as every binary that acts on one takes it, and the
//! tag that marks a stack as this app's.

use crate::{metrics_stack, MetricsStack, MetricsStackProps};

/// The tag every deploy puts on the stack: `destroy` acts only on stacks that carry it.
pub const APP_TAG: (&str, &str) = ("serverlesspresso:app", "metrics");

/// Which of the app's stacks a command acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StackChoice {
    /// `serverlesspresso-metrics`: imports the core app's bus (the workshop).
    #[default]
    Workshop,
    /// `serverlesspresso-metrics-standalone`: creates its own bus (a fresh account, local runs).
    Standalone,
}

impl StackChoice {
    pub fn props(self) -> MetricsStackProps {
        match self {
            StackChoice::Workshop => MetricsStackProps::default(),
            StackChoice::Standalone => MetricsStackProps::standalone(),
        }
    }
}

/// The stack selection, shared by the binaries that act on a stack.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct StackArgs {
    /// Which of the app's stacks.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub stack: StackChoice,
    /// CloudFormation stack name [default: the stack's own].
    #[arg(long, global = true)]
    pub stack_name: Option<String>,
}

impl StackArgs {
    /// The selected stack, built.
    pub fn build(&self) -> cfn::error::Result<MetricsStack> {
        metrics_stack(&self.stack.props())
    }

    /// The CloudFormation stack name: `--stack-name`, or the stack's own.
    pub fn name_of(&self, stack: &MetricsStack) -> String {
        self.stack_name.clone().unwrap_or_else(|| stack.name().to_owned())
    }
}
