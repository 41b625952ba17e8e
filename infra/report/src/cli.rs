//! What the `report` and `backfill` commands share: which table they read or write.

use anyhow::Context;
use metrics_stack::StackArgs;

/// The metrics table: named, or the selected stack's.
#[derive(clap::Args, Debug)]
pub struct TableArgs {
    /// The metrics table [default: the selected stack's].
    #[arg(long)]
    pub table: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

impl TableArgs {
    /// The table's name.
    pub fn name(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.table {
            return Ok(t.clone());
        }
        let app = self.stack.build().context("the stack is invalid")?;
        let table = app.table();
        table.physical_name().map(str::to_owned).with_context(|| format!("{} has no physical name", table.construct()))
    }
}
