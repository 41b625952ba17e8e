//! `deploy`: deploy, diff, destroy, read outputs of, and bootstrap assets for the metrics
//! stack, like the CDK CLI. Without a subcommand it deploys.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use clap::{Args, Parser, Subcommand};
use connection::Connection;
use deploy::cloudformation::{PlannedChange, Progress};
use deploy::deployer::{
    Approval, DeployOptions, DeployOutcome, Deployer, DestroyOutcome, OutputsTable, Preview, RequireApproval, Target,
};
use metrics_stack::{MetricsStack, StackArgs, StackChoice};

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
    #[arg(long, default_value = "broadening", value_parser = approval_levels())]
    require_approval: RequireApproval,
    /// Let the named resource (a logical ID, repeatable) through the data-safety guard:
    /// removing, replacing or destructively changing it loses its data.
    #[arg(long, value_name = "LOGICAL_ID")]
    allow_replace: Vec<String>,
    /// Where cargo-lambda wrote the zips [default: $CARGO_TARGET_DIR/lambda or target/lambda].
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
    /// Print the reviewed plan and the outcome as one JSON document on stdout (progress goes
    /// to stderr), for CI.
    #[arg(long)]
    json: bool,
    /// Adopt resources that exist under the template's names, data included (the table an
    /// earlier `destroy` kept), instead of failing to create them.
    #[arg(long)]
    import_existing: bool,
}

/// `--require-approval`'s choices, from the library's list of levels.
fn approval_levels() -> impl clap::builder::TypedValueParser<Value = RequireApproval> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = RequireApproval::LEVELS.iter().map(|(_, name, help)| PossibleValue::new(*name).help(*help));
    PossibleValuesParser::new(values).map(|name| RequireApproval::named(&name).unwrap_or_default())
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
        /// Exit 1 when the change is destructive, or is any change at all.
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
    },
    /// Delete the stack; retained resources (the table) stay.
    Destroy {
        #[arg(long)]
        yes: bool,
        /// Delete even a stack that lacks the tag this tool's deploys set.
        #[arg(long)]
        force: bool,
        /// Turn the stack's termination protection (which every deploy turns on) off first.
        #[arg(long)]
        unprotect: bool,
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
    /// Create the asset bucket, encrypted and not public (an existing one is left alone).
    Bootstrap {
        #[arg(long)]
        asset_bucket: String,
        /// Also set this tool's encryption, versioning, policy and public-access block on a
        /// bucket that exists already, replacing its own.
        #[arg(long)]
        update: bool,
    },
    /// List the guard's data-loss rules: id, where each applies, what it refuses.
    Rules,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json();
    connection::run_main(run(cli), json)
}

impl Cli {
    /// Whether stdout is to carry one JSON document, an error included.
    fn json(&self) -> bool {
        match &self.command {
            None => self.deploy.json,
            Some(Command::Deploy(args) | Command::Diff { args, .. }) => args.json,
            Some(Command::Outputs { json }) => *json,
            Some(_) => false,
        }
    }
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
            import_existing: self.import_existing,
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    if let Some(Command::Rules) = cli.command {
        for (id, applies, refuses) in deploy::guard::rules() {
            println!("{id:<24} {applies:<56} {refuses}");
        }
        return Ok(true);
    }
    let (app, t) = deploy_cli::target(&cli.stack)?;
    // Layer 1 needs no AWS at all: no clients, no configuration.
    if let Some(Command::Diff { from: Some(old), fail_on, args, .. }) = &cli.command {
        return offline_diff(&t, old, *fail_on, args.json);
    }
    let d = Deployer::new(&cli.connection.sdk_config().await);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    // Interrupted (Ctrl-C, SIGTERM) while a stack policy is lifted: restored before exiting.
    let finished = tokio::select! {
        r = command(&d, (&app, &t), cli) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
    };
    if let Some(result) = finished {
        return result;
    }
    match d.restore_lifted().await {
        Ok(Some(stack)) => eprintln!("stack policy of {stack} restored: it had been lifted for the interrupted update"),
        Ok(None) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "interrupted, and the lifted stack policy could not be restored: the next deploy restores it",
            ))
        }
    }
    anyhow::bail!("interrupted")
}

/// One command, connected.
async fn command(d: &Deployer, (app, t): (&MetricsStack, &Target), cli: Cli) -> Result<bool> {
    let ok = match cli.command {
        None => deploy(d, t, &cli.deploy, (&cli.stack, &cli.connection)).await?,
        Some(Command::Deploy(args)) => deploy(d, t, &args, (&cli.stack, &cli.connection)).await?,
        Some(Command::Diff { template: true, .. }) => {
            let lines = d.template_diff(t).await?;
            if lines.is_empty() {
                println!("no differences between the deployed template of {} and the local one", t.name);
            }
            for l in lines {
                println!("{l}");
            }
            true
        }
        Some(Command::Diff { args, fail_on, .. }) => {
            let json = args.json;
            let mut report = reporter(json, None);
            let preview = d.diff(t, &args.options(), &mut report).await?;
            if json {
                let mut doc = match &preview {
                    Preview::UpToDate { stack } => serde_json::json!({"stack": stack, "upToDate": true}),
                    Preview::NewStack { stack, review } => {
                        let mut v = review.summary();
                        v["stack"] = stack.clone().into();
                        v["newStack"] = true.into();
                        v
                    }
                    Preview::Change(planned) => plan_json(planned),
                };
                if doc.get("upToDate").is_none() {
                    doc["upToDate"] = false.into();
                }
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                match &preview {
                    Preview::UpToDate { stack } => println!("no changes: {stack} is up to date"),
                    Preview::NewStack { stack, review } => {
                        println!("there is no stack {stack}: a deploy creates it\n\n{review}")
                    }
                    Preview::Change(planned) => println!("\n{}", planned.review),
                }
                for r in preview.review().map(|r| r.refused.as_slice()).unwrap_or_default() {
                    println!(
                        "deploy would refuse: {} ({}): {}",
                        r.change.logical_resource_id, r.change.resource_type, r.why
                    );
                }
            }
            passes(fail_on, preview.review().map(|r| !r.refused.is_empty()), preview.review().is_some())
        }
        Some(Command::Destroy { yes, force, unprotect }) => destroy(d, t, yes, force, unprotect).await?,
        Some(Command::Outputs { json }) => {
            let outputs = d.outputs(t).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outputs)?);
            } else {
                println!("{}", OutputsTable(&outputs));
            }
            true
        }
        Some(Command::Redrive { timeout }) => redrive(app, &cli.connection, Duration::from_secs(timeout)).await?,
        Some(Command::Bootstrap { asset_bucket, update }) => {
            println!("{}", d.bootstrap(&asset_bucket, update, &mut |p| println!("{p}")).await?);
            true
        }
        Some(Command::Rules) => unreachable!("answered before connecting"),
    };
    Ok(ok)
}

/// Progress as lines: on stdout, or on stderr when stdout carries JSON. Warnings go to stderr.
/// With `reviewed`, the last review is kept for the JSON document.
fn reporter(json: bool, mut reviewed: Option<&mut Option<PlannedChange>>) -> impl FnMut(Progress) + Send + '_ {
    move |p| {
        if let (Progress::Reviewed(planned), Some(slot)) = (&p, reviewed.as_deref_mut()) {
            *slot = Some(planned.clone());
        }
        match p {
            Progress::ChangeSetLeftOver { .. } | Progress::Warning { .. } => eprintln!("{p}"),
            // The JSON document carries the review.
            Progress::Reviewed(_) if json => {}
            p if json => eprintln!("{p}"),
            p => println!("{p}"),
        }
    }
}

/// A planned change as CI reads it.
fn plan_json(planned: &PlannedChange) -> serde_json::Value {
    let mut v = planned.review.summary();
    v["stack"] = planned.stack.clone().into();
    v["changeSet"] = planned.id.clone().into();
    v
}

/// Asks on the terminal; without one, nobody can approve.
fn ask(planned: &PlannedChange) -> Approval {
    if !std::io::stdin().is_terminal() {
        return Approval::Unavailable("no terminal to ask for confirmation: pass --yes to proceed".to_owned());
    }
    match confirm(&format!("Deploy these changes to {}?", planned.stack)) {
        Ok(true) => Approval::Yes,
        Ok(false) => Approval::No,
        Err(e) => Approval::Unavailable(format!("cannot read the answer: {e}")),
    }
}

/// Asks on stderr, so stdout carries only the command's output (one JSON document with
/// `--json`).
fn confirm(question: &str) -> std::io::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn destroy(d: &Deployer, t: &Target, yes: bool, force: bool, unprotect: bool) -> Result<bool> {
    let Some(plan) = d.destroy_plan(t, force, unprotect).await? else {
        println!("{}", DestroyOutcome::NoStack { stack: t.name.clone() });
        return Ok(true);
    };
    println!("{plan}");
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("no terminal to ask for confirmation: pass --yes to proceed");
        }
        if !confirm(&format!("Delete stack {} and the resources above?", t.name))? {
            eprintln!("not destroyed");
            return Ok(false);
        }
    }
    let outcome = d.destroy(plan, &mut |p| println!("{p}")).await?;
    match &outcome {
        DestroyOutcome::Failed(_) => eprintln!("{outcome}"),
        _ => println!("{outcome}"),
    }
    Ok(!matches!(outcome, DestroyOutcome::Failed(_)))
}

async fn redrive(app: &MetricsStack, connection: &Connection, timeout: Duration) -> Result<bool> {
    let sqs = aws_sdk_sqs::Client::new(&connection.sdk_config().await);
    let name = |q: &cfn::constructs::sqs::Queue| {
        q.physical_name().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{} has no physical name", q.construct()))
    };
    let (source, dlq) = (&name(app.queue())?, &name(app.dead_letters())?);
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
    let diff = deploy::offline::diff(&old_template, &new_template);
    if json {
        println!("{}", serde_json::to_string_pretty(&diff.summary())?);
    } else if diff.is_empty() {
        println!("no changes between {} and the synthesized {}", old.display(), t.name);
    } else {
        print!("{diff}");
        for r in &diff.review.refused {
            println!("destructive: {} ({}): {}", r.change.logical_resource_id, r.change.resource_type, r.why);
        }
    }
    Ok(passes(fail_on, Some(!diff.review.refused.is_empty()), !diff.is_empty()))
}

/// Whether a diff passes `fail_on`, from whether the guard refuses something and whether
/// anything changes at all.
fn passes(fail_on: Option<FailOn>, destructive: Option<bool>, changes: bool) -> bool {
    match fail_on {
        Some(FailOn::Destructive) => destructive != Some(true),
        Some(FailOn::AnyChange) => !changes,
        None => true,
    }
}

/// The command that executes a prepared change set: every flag that chose this stack and
/// where it lives, so step two acts on what step one prepared.
fn execute_command(change_set: &str, stack: &StackArgs, connection: &Connection) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
    let mut cmd = format!("cargo run --bin deploy -- --execute {}", quote(change_set));
    if stack.stack != StackChoice::default() {
        cmd.push_str(&format!(
            " --stack {}",
            stack.stack.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
        ));
    }
    for (flag, value) in [
        ("--stack-name", &stack.stack_name),
        ("--region", &connection.region),
        ("--profile", &connection.profile),
        ("--endpoint-url", &connection.endpoint_url),
    ] {
        if let Some(v) = value {
            cmd.push_str(&format!(" {flag} {}", quote(v)));
        }
    }
    if connection.local_credentials {
        cmd.push_str(" --local-credentials");
    }
    cmd
}

/// Deploys in one step, or one of the two steps.
async fn deploy(d: &Deployer, t: &Target, args: &DeployArgs, selected: (&StackArgs, &Connection)) -> Result<bool> {
    let options = args.options();
    let mut reviewed = None;
    let mut report = reporter(args.json, Some(&mut reviewed));
    let outcome = match (&args.execute, args.prepare) {
        (Some(change_set), _) => d.execute_prepared(t, change_set, &options, &mut ask, &mut report).await?,
        (None, true) => d.prepare(t, &options, &mut report).await?.1,
        (None, false) => d.deploy(t, &options, &mut ask, &mut report).await?,
    };
    drop(report);
    if args.json {
        let mut doc = reviewed.as_ref().map_or_else(|| serde_json::json!({"stack": t.name}), plan_json);
        doc["outcome"] = serde_json::to_value(&outcome)?;
        if let DeployOutcome::Prepared { change_set, .. } = &outcome {
            doc["execute"] = execute_command(change_set, selected.0, selected.1).into();
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if outcome.succeeded() {
        println!("{outcome}");
        if let DeployOutcome::Prepared { change_set, .. } = &outcome {
            println!("execute it with: {}", execute_command(change_set, selected.0, selected.1));
        }
    } else {
        eprintln!("{outcome}");
    }
    Ok(outcome.succeeded())
}
