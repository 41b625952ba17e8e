//! The `deploy` and `assets` commands over the deploy library: this crate is where the app's
//! stack meets the library (the [`target`] of a command), so the library knows no app.

use deploy::deployer::Target;
use metrics_stack::{MetricsStack, StackArgs, APP_TAG};

/// The selected stack of the app, built, and the deploy target it makes: named `--stack-name`
/// or its own name, its functions' assets, its fixed-name table, the app's tag.
pub fn target(selection: &StackArgs) -> cfn::error::Result<(MetricsStack, Target)> {
    let app = selection.build()?;
    let target = Target::new(selection.name_of(&app), app.to_template()?, &app.functions(), &[app.table()], APP_TAG);
    Ok((app, target))
}
