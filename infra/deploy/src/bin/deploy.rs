//! `deploy`: deploy, diff, destroy, read outputs of, and bootstrap assets for the metrics
//! stack, like the CDK CLI. Without a subcommand it deploys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use deploy::cloudformation as cf;
use deploy::commands::{self, DeployOptions, RequireApproval, Target};
use deploy::{Connection, StackArgs};

#[derive(Parser)]
#[command(version, about = "Deploy the Serverlesspresso metrics stack with CloudFormation")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    deploy: DeployArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct DeployArgs {
    /// S3 bucket for the Lambda zips (create it with `bootstrap`).
    #[arg(long)]
    asset_bucket: Option<String>,
    /// Extra template parameters, KEY=VALUE.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    parameters: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Step one of a two-step deploy: create and review the change set, print its name, and
    /// stop.
    #[arg(long, conflicts_with = "execute")]
    prepare: bool,
    /// Step two: review the named change set again and execute it.
    #[arg(long, value_name = "CHANGE_SET")]
    execute: Option<String>,
    /// When to ask before executing; without a terminal, a needed approval is a refusal.
    #[arg(long, value_enum, default_value_t)]
    require_approval: RequireApproval,
    /// Let the named resource (a logical ID, repeatable) through the data-safety guard:
    /// removing, replacing or destructively changing it loses its data.
    #[arg(long, value_name = "LOGICAL_ID")]
    allow_replace: Vec<String>,
    /// Where cargo-lambda wrote the zips [default: $CARGO_TARGET_DIR/lambda or target/lambda].
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    /// A change the data-safety guard refuses.
    Destructive,
    /// Any change.
    AnyChange,
}

#[derive(Subcommand)]
enum Command {
    /// Publish assets, review a change set, execute it, print the outputs (the default).
    Deploy(DeployArgs),
    /// Show what a deploy would change, without changing anything.
    Diff {
        #[command(flatten)]
        args: DeployArgs,
        /// Compare the local template with the deployed one instead of creating a change set.
        #[arg(long)]
        template: bool,
        /// Offline (no AWS at all): compare with this template (YAML or JSON), for example the
        /// main branch's synth-out/, predicting replacements and data loss.
        #[arg(long, value_name = "OLD_TEMPLATE", conflicts_with = "template")]
        from: Option<PathBuf>,
        /// With --from: exit 1 when the change is destructive, or is any change at all.
        #[arg(long, value_enum, requires = "from")]
        fail_on: Option<FailOn>,
        /// With --from: print the review as JSON.
        #[arg(long, requires = "from")]
        json: bool,
    },
    /// Delete the stack; retained resources (the table) stay.
    Destroy {
        #[arg(long)]
        yes: bool,
        /// Delete even a stack that lacks the tag this tool's deploys set.
        #[arg(long)]
        force: bool,
    },
    /// Print the stack's outputs.
    Outputs {
        #[arg(long)]
        json: bool,
    },
    /// Move the dead letters back to MetricsQueue once their cause is fixed (SQS's
    /// StartMessageMoveTask), and say how many moved.
    Redrive {
        /// Stop waiting after this many seconds (the move goes on in SQS).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Create the asset bucket, encrypted and not public.
    Bootstrap {
        #[arg(long)]
        asset_bucket: String,
    },
}

fn main() -> ExitCode {
    deploy::run_main(run(Cli::parse()))
}

impl DeployArgs {
    fn options(&self) -> DeployOptions {
        DeployOptions {
            asset_bucket: self.asset_bucket.clone(),
            parameters: self.parameters.clone(),
            yes: self.yes,
            require_approval: self.require_approval,
            allow_replace: self.allow_replace.clone(),
            lambda_dir: self.lambda_dir.clone(),
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    let t = Target::new(&cli.stack, cli.connection.clone())?;
    let ok = match cli.command {
        None => deploy(&t, &cli.deploy).await?,
        Some(Command::Deploy(args)) => deploy(&t, &args).await?,
        Some(Command::Diff { from: Some(old), fail_on, json, .. }) => offline_diff(&t, &old, fail_on, json)?,
        Some(Command::Diff { args, template, .. }) => commands::diff(&t, &args.options(), template).await?,
        Some(Command::Destroy { yes, force }) => commands::destroy(&t, yes, force).await?,
        Some(Command::Outputs { json }) => commands::outputs(&t, json).await?,
        Some(Command::Redrive { timeout }) => redrive(&t, Duration::from_secs(timeout)).await?,
        Some(Command::Bootstrap { asset_bucket }) => {
            let (_, s3) = t.connection.clients().await;
            cf::bootstrap(&s3, &asset_bucket, t.connection.plain_http()).await?;
            true
        }
    };
    Ok(ok)
}

async fn redrive(t: &Target, timeout: Duration) -> Result<bool> {
    let sqs = aws_sdk_sqs::Client::new(&t.connection.sdk_config().await);
    let name = |q: &cfn::constructs::sqs::Queue| {
        q.physical_name().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{} has no physical name", q.construct()))
    };
    let (source, dlq) = (&name(t.app.queue())?, &name(t.app.dead_letters())?);
    let queues = deploy::redrive::queues(&sqs, source, dlq).await?;
    let mut last = None;
    let done = deploy::redrive::redrive(&sqs, &queues, Duration::from_secs(2), timeout, |p| {
        if last.as_ref() != Some(p) {
            println!("{}: {} of {} moved", p.status, p.moved, p.to_move);
            last = Some(p.clone());
        }
    })
    .await
    .with_context(|| format!("redrive from {dlq} to {source}"))?;
    if done.waiting_before == 0 {
        println!("{dlq} is empty: nothing to move");
    } else {
        println!("moved {} dead letter(s) from {dlq} back to {source}", done.moved);
    }
    Ok(true)
}

/// Layer 1: the offline diff against `old`; the exit status follows `fail_on`.
fn offline_diff(t: &Target, old: &std::path::Path, fail_on: Option<FailOn>, json: bool) -> Result<bool> {
    let text = std::fs::read_to_string(old).with_context(|| format!("cannot read {}", old.display()))?;
    let old_template: serde_json::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a YAML or JSON template", old.display()))?;
    let new_template: serde_json::Value = serde_json::from_str(&t.template.to_json()?)?;
    let review = deploy::offline::review(&old_template, &new_template);
    if json {
        let change = |c: &deploy::guard::ResourceChange| {
            serde_json::json!({"action": c.action, "logicalResourceId": c.logical_resource_id,
                "resourceType": c.resource_type, "replacement": c.replacement})
        };
        let out = serde_json::json!({
            "changes": review.changes.iter().map(change).collect::<Vec<_>>(),
            "refused": review.refused.iter().map(|r| serde_json::json!({
                "logicalResourceId": r.change.logical_resource_id, "resourceType": r.change.resource_type, "why": r.why,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if review.changes.is_empty() && review.refused.is_empty() {
        println!("no changes between {} and the synthesized {}", old.display(), t.name);
    } else {
        print!("{}", review.table());
        for r in &review.refused {
            println!("destructive: {} ({}): {}", r.change.logical_resource_id, r.change.resource_type, r.why);
        }
    }
    Ok(match fail_on {
        Some(FailOn::Destructive) => review.refused.is_empty(),
        Some(FailOn::AnyChange) => review.changes.is_empty() && review.refused.is_empty(),
        None => true,
    })
}

/// Deploys in one step, or one of the two steps.
async fn deploy(t: &Target, args: &DeployArgs) -> Result<bool> {
    let options = args.options();
    match (&args.execute, args.prepare) {
        (Some(change_set), _) => commands::execute_prepared(t, change_set, &options).await,
        (None, true) => commands::prepare(t, &options).await,
        (None, false) => commands::deploy(t, &options).await,
    }
}
