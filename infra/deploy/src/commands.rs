//! The commands of the `deploy` binary as library functions, so `local` and tests deploy
//! through the same code. Each returns whether it succeeded.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_cloudformation::types::StackStatus;

use crate::cloudformation as cf;
use crate::guard;
use crate::Connection;

/// The stack to act on: its name, its synthesized template, and where it lives.
pub struct Target {
    pub name: String,
    /// The stack's typed handles: the physical names and settings tools act on.
    pub app: metrics_stack::MetricsStack,
    pub template: cfn::template::Template,
    pub connection: Connection,
}

impl Target {
    /// The selected stack of the app, named `--stack-name` or by default its own name.
    pub fn new(selection: &crate::StackArgs, connection: Connection) -> Result<Self> {
        let stack = metrics_stack::metrics_stack(&selection.stack.props()).context("the stack is invalid")?;
        Ok(Target {
            name: selection.stack_name.clone().unwrap_or_else(|| stack.name().to_owned()),
            template: stack.to_template().context("cannot render the template")?,
            app: stack,
            connection,
        })
    }
}

/// When a deploy asks before executing (the CDK CLI's `--require-approval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RequireApproval {
    /// Never ask.
    Never,
    /// Ask for every change.
    AnyChange,
    /// Ask when permissions change (IAM roles and policies, resource policies) or data may be
    /// lost (a change let through with --allow-replace).
    #[default]
    Broadening,
    /// Ask only when data may be lost (a change let through with --allow-replace).
    Destructive,
}

impl RequireApproval {
    /// Whether `review` needs the user's yes, given the resources let through by name.
    pub fn needs_approval(self, review: &guard::Review, allowed: &[String]) -> bool {
        let destructive = review.refused.iter().any(|r| allowed.contains(&r.change.logical_resource_id));
        match self {
            RequireApproval::Never => false,
            RequireApproval::AnyChange => true,
            RequireApproval::Broadening => destructive || !review.iam.is_empty(),
            RequireApproval::Destructive => destructive,
        }
    }
}

/// What `deploy` and `diff` take besides the target.
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    pub asset_bucket: Option<String>,
    /// Extra template parameters, `KEY=VALUE`.
    pub parameters: Vec<String>,
    pub yes: bool,
    pub require_approval: RequireApproval,
    /// Logical IDs whose data loss the user accepts (`--allow-replace ID`, repeatable).
    pub allow_replace: Vec<String>,
    pub lambda_dir: Option<PathBuf>,
}

pub async fn publish_assets(
    t: &Target,
    s3: &aws_sdk_s3::Client,
    args: &DeployOptions,
) -> Result<BTreeMap<String, String>> {
    let bucket = args.asset_bucket.as_deref().ok_or_else(|| {
        anyhow!("--asset-bucket is required: the Lambda zips are uploaded there (create one with `cargo run --bin deploy -- bootstrap --asset-bucket NAME`)")
    })?;
    let lambda_dir = args.lambda_dir.clone().unwrap_or_else(crate::assets::default_lambda_dir);
    let mut parameters = BTreeMap::new();
    parameters.insert(cfn::constructs::lambda::ASSET_BUCKET_PARAMETER.to_owned(), bucket.to_owned());
    for asset in crate::assets::assets_of(t.app.functions()) {
        // Rezipping several MB is seconds of CPU: off the async threads, so Ctrl-C and
        // progress are not held up.
        let (p, body) = {
            let (asset, dir) = (asset.clone(), lambda_dir.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let p = crate::assets::package(&asset, &dir)?;
                let body = std::fs::read(&p.path).with_context(|| format!("cannot read {}", p.path.display()))?;
                Ok((p, body))
            })
            .await
            .context("packaging the assets stopped")??
        };
        let uploaded = cf::upload_once(s3, bucket, &p.key(), body).await?;
        println!(
            "asset {:<18} {:>9} bytes  s3://{bucket}/{}  {}",
            asset.name,
            p.bytes,
            p.key(),
            if uploaded { "uploaded" } else { "already there" }
        );
        parameters.insert(asset.key_parameter.clone(), p.key());
    }
    for kv in &args.parameters {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow!("--parameters {kv:?}: expected KEY=VALUE"))?;
        if !t.template.parameters.keys().any(|p| p.as_str() == k) {
            let known: Vec<&str> = t.template.parameters.keys().map(|p| p.as_str()).collect();
            bail!("--parameters {k}: the template has no such parameter (it has {})", known.join(", "));
        }
        parameters.insert(k.to_owned(), v.to_owned());
    }
    Ok(parameters)
}

/// Creates and reviews a change set; `None` when nothing would change.
pub async fn plan(
    t: &Target,
    args: &DeployOptions,
) -> Result<Option<(cf::PlannedChange, aws_sdk_cloudformation::Client)>> {
    let (cfn, s3) = t.connection.clients().await;
    let parameters = publish_assets(t, &s3, args).await?;
    let status = cf::stack_status(&cfn, &t.name).await?;
    if let Some(status) = &status {
        if let Some(blocker) = blocked(status, &t.name) {
            bail!("{blocker}");
        }
        if *status == StackStatus::ReviewInProgress {
            println!(
                "stack {} exists only as an unexecuted change set (REVIEW_IN_PROGRESS); a new one is created (drop the old with `aws cloudformation delete-stack --stack-name {}`)",
                t.name, t.name
            );
        }
    }
    let exists = status.as_ref().is_some_and(|s| *s != StackStatus::ReviewInProgress);
    let body = t.template.to_json()?;
    let settled_ok = matches!(status, Some(StackStatus::CreateComplete | StackStatus::UpdateComplete));
    if settled_ok && cf::is_current(&cfn, &t.name, &serde_json::from_str(&body)?, &parameters).await? {
        return Ok(None);
    }
    let source = cf::template_source(&s3, args.asset_bucket.as_deref(), body).await?;
    println!("creating a change set for {} ({}) ...", t.name, if exists { "update" } else { "create" });
    Ok(cf::plan(&cfn, &t.name, source, &parameters, exists).await?.map(|p| (p, cfn)))
}

/// Why a stack in `status` cannot be deployed now, with the exact next command; `None` when it
/// can.
pub fn blocked(status: &StackStatus, name: &str) -> Option<String> {
    match status {
        StackStatus::RollbackComplete => Some(format!(
            "stack {name} is in ROLLBACK_COMPLETE (its first create failed) and cannot be updated: delete it with `cargo run --bin deploy -- destroy --stack-name {name}`, then deploy again"
        )),
        StackStatus::UpdateRollbackFailed => Some(format!(
            "stack {name} is in UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback --stack-name {name}` (with `--resources-to-skip ID` for a resource that cannot roll back), wait for UPDATE_ROLLBACK_COMPLETE, then deploy again"
        )),
        StackStatus::DeleteFailed => Some(format!(
            "stack {name} is in DELETE_FAILED: finish with `cargo run --bin deploy -- destroy --stack-name {name}` (see the failed resource in its events), then deploy again"
        )),
        s if s.as_str().ends_with("_IN_PROGRESS") && *s != StackStatus::ReviewInProgress => Some(format!(
            "stack {name} is busy ({}): wait until it settles (`aws cloudformation wait stack-update-complete --stack-name {name}` or watch its events), then deploy again",
            s.as_str()
        )),
        _ => None,
    }
}

pub fn print_review(review: &guard::Review) {
    println!("\n{}", review.table());
    if !review.iam.is_empty() {
        println!("IAM and resource-policy changes:\n{}", guard::table(&review.iam));
    }
}

pub fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for confirmation: pass --yes to proceed");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub async fn deploy(t: &Target, args: &DeployOptions) -> Result<bool> {
    let Some((planned, cfn)) = plan(t, args).await? else {
        println!("no changes: {} is up to date", t.name);
        return Ok(true);
    };
    execute(t, &cfn, planned, args).await
}

/// Step one of a two-step deploy: creates and reviews the change set, refuses it as deploy
/// would, and leaves it for `execute_prepared`. Prints its name.
pub async fn prepare(t: &Target, args: &DeployOptions) -> Result<bool> {
    let Some((planned, cfn)) = plan(t, args).await? else {
        println!("no changes: {} is up to date", t.name);
        return Ok(true);
    };
    print_review(&planned.review);
    if !refuse_losses(t, &cfn, &planned, args).await {
        return Ok(false);
    }
    println!("prepared change set {}", planned.id);
    println!("execute it with: cargo run --bin deploy -- --execute '{}'", planned.id);
    Ok(true)
}

/// Step two: reviews the prepared change set again, as AWS describes it now, and executes it
/// if the guard still lets it through.
pub async fn execute_prepared(t: &Target, change_set: &str, args: &DeployOptions) -> Result<bool> {
    let (cfn, _) = t.connection.clients().await;
    let Some(review) = cf::review_change_set(&cfn, &t.name, change_set).await? else {
        println!("no changes: change set {change_set} has nothing to do");
        return Ok(true);
    };
    execute(t, &cfn, cf::PlannedChange { id: change_set.to_owned(), review }, args).await
}

/// Refuses (deleting the change set) what the guard refuses and the user did not name.
async fn refuse_losses(
    t: &Target,
    cfn: &aws_sdk_cloudformation::Client,
    planned: &cf::PlannedChange,
    args: &DeployOptions,
) -> bool {
    let refused: Vec<_> = planned.review.refusals_except(&args.allow_replace).collect();
    if refused.is_empty() {
        return true;
    }
    cf::delete_change_set(cfn, &t.name, &planned.id).await;
    eprintln!("refused: this change would lose data:");
    for r in &refused {
        eprintln!("  {} ({}): {}", r.change.logical_resource_id, r.change.resource_type, r.why);
    }
    let ids: std::collections::BTreeSet<&str> = refused.iter().map(|r| r.change.logical_resource_id.as_str()).collect();
    let flags: Vec<String> = ids.iter().map(|id| format!("--allow-replace {id}")).collect();
    eprintln!("the change set was deleted; re-run with {} if losing that data is intended", flags.join(" "));
    false
}

/// Guard, approval, stack policy, execution, events, outputs.
async fn execute(
    t: &Target,
    cfn: &aws_sdk_cloudformation::Client,
    planned: cf::PlannedChange,
    args: &DeployOptions,
) -> Result<bool> {
    print_review(&planned.review);
    if !refuse_losses(t, cfn, &planned, args).await {
        return Ok(false);
    }
    if !args.yes && args.require_approval.needs_approval(&planned.review, &args.allow_replace) {
        let answer = confirm(&format!("Deploy these changes to {}?", t.name));
        if !matches!(answer, Ok(true)) {
            cf::delete_change_set(cfn, &t.name, &planned.id).await;
            answer?;
            eprintln!("not deployed; the change set was deleted");
            return Ok(false);
        }
    }
    // Layer 3: the stack policy protects every stateful resource on the server; a resource the
    // user named with --allow-replace is left out for this update only.
    let protected = guard::stack_policy(&t.template, &[]);
    let exists = cf::stack_status(cfn, &t.name).await?.is_some_and(|s| s != StackStatus::ReviewInProgress);
    if exists {
        cf::set_stack_policy(cfn, &t.name, &guard::stack_policy(&t.template, &args.allow_replace)).await?;
    }
    let seen = cf::event_ids(cfn, &t.name).await;
    if let Err(e) = cfn.execute_change_set().change_set_name(&planned.id).stack_name(&t.name).send().await {
        cf::delete_change_set(cfn, &t.name, &planned.id).await;
        if exists {
            cf::set_stack_policy(cfn, &t.name, &protected).await?;
        }
        bail!("cannot execute the change set (deleted it): {}", cf::sdk(&e));
    }
    let ok = cf::follow(cfn, &t.name, seen, false).await?;
    if cf::stack_status(cfn, &t.name).await?.is_some() {
        cf::set_stack_policy(cfn, &t.name, &protected).await?;
    }
    if !ok {
        return Ok(false);
    }
    println!("\n{} deployed", t.name);
    print_outputs(&cf::outputs(cfn, &t.name).await?, false);
    Ok(true)
}

pub async fn diff(t: &Target, args: &DeployOptions, template_only: bool) -> Result<bool> {
    if template_only {
        let (cfn, _) = t.connection.clients().await;
        let deployed = cf::deployed_template(&cfn, &t.name).await?;
        let local: serde_json::Value = serde_json::from_str(&t.template.to_json()?)?;
        let lines = cf::template_diff(&deployed, &local);
        if lines.is_empty() {
            println!("no differences between the deployed template of {} and the local one", t.name);
        }
        for l in lines {
            println!("{l}");
        }
        return Ok(true);
    }
    match plan(t, args).await? {
        None => println!("no changes: {} is up to date", t.name),
        Some((planned, cfn)) => {
            print_review(&planned.review);
            for r in &planned.review.refused {
                println!(
                    "deploy would refuse: {} ({}): {}",
                    r.change.logical_resource_id, r.change.resource_type, r.why
                );
            }
            cf::delete_change_set(&cfn, &t.name, &planned.id).await;
        }
    }
    Ok(true)
}

/// The tag every deploy puts on the stack: `destroy` acts only on stacks that carry it.
pub const APP_TAG: (&str, &str) = ("serverlesspresso:app", "metrics");

pub async fn destroy(t: &Target, yes: bool, force: bool) -> Result<bool> {
    let (cfn, _) = t.connection.clients().await;
    let Some(stack) = cf::describe(&cfn, &t.name).await? else {
        println!("no stack {}: nothing to destroy", t.name);
        return Ok(true);
    };
    let ours = stack.tags().iter().any(|tag| tag.key() == Some(APP_TAG.0) && tag.value() == Some(APP_TAG.1));
    if !ours && !force {
        eprintln!(
            "refused: stack {} does not carry the tag {}={} that this tool's deploys set, so it may not be this app's; pass --force to delete it anyway",
            t.name, APP_TAG.0, APP_TAG.1
        );
        return Ok(false);
    }
    let deployed = cf::deployed_template(&cfn, &t.name).await?;
    let physical = cf::physical_ids(&cfn, &t.name).await?;
    let sqs = aws_sdk_sqs::Client::new(&t.connection.sdk_config().await);
    let mut retained = Vec::new();
    println!("destroying {} deletes:", t.name);
    for (id, r) in deployed["Resources"].as_object().into_iter().flatten() {
        let ty = r["Type"].as_str().unwrap_or_default();
        let physical_id = physical.get(id).cloned().unwrap_or_default();
        if r["DeletionPolicy"] == "Retain" {
            retained.push((id.clone(), physical_id));
            continue;
        }
        let mut what = String::new();
        if ty == cfn::constructs::sqs::Queue::TYPE && !physical_id.is_empty() {
            what = match crate::local::depth(&sqs, &physical_id).await {
                Ok(d) => format!("  with {} waiting and {} in flight message(s)", d.waiting, d.in_flight),
                Err(_) => "  (its depth could not be read)".to_owned(),
            };
        } else if guard::is_stateful(ty) {
            what = "  with its data".to_owned();
        }
        println!("  {id} ({ty}) {physical_id}{what}");
    }
    for (id, physical_id) in &retained {
        println!("and keeps (DeletionPolicy: Retain): {id} {physical_id}");
    }
    if !yes && !confirm(&format!("Delete stack {} and the resources above?", t.name))? {
        eprintln!("not destroyed");
        return Ok(false);
    }
    let seen = cf::event_ids(&cfn, &t.name).await;
    cfn.delete_stack()
        .stack_name(&t.name)
        .send()
        .await
        .map_err(|e| anyhow!("cannot delete {}: {}", t.name, cf::sdk(&e)))?;
    if !cf::follow(&cfn, &t.name, seen, true).await? {
        return Ok(false);
    }
    println!("{} destroyed", t.name);
    for (id, physical_id) in retained {
        println!("retained (DeletionPolicy: Retain), still in the account: {id} {physical_id}");
    }
    Ok(true)
}

pub fn print_outputs(outputs: &BTreeMap<String, String>, json: bool) {
    if outputs.is_empty() && !json {
        println!("(no outputs)");
        return;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(outputs).unwrap_or_default());
        return;
    }
    let width = outputs.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in outputs {
        println!("{k:<width$}  {v}");
    }
}

pub async fn outputs(t: &Target, json: bool) -> Result<bool> {
    let (cfn, _) = t.connection.clients().await;
    print_outputs(&cf::outputs(&cfn, &t.name).await?, json);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_levels_mean_what_the_cdk_clis_do() {
        let change = |ty: &str, action: &str, replacement: Option<&str>| guard::ResourceChange {
            action: action.into(),
            logical_resource_id: "X".into(),
            resource_type: ty.into(),
            replacement: replacement.map(str::to_owned),
            ..Default::default()
        };
        let plain = guard::review(vec![change("AWS::Lambda::Function", "Modify", Some("False"))]);
        let iam = guard::review(vec![change("AWS::IAM::Role", "Modify", Some("False"))]);
        let lossy = guard::review(vec![change("AWS::SQS::Queue", "Modify", Some("True"))]);
        let allowed = ["X".to_owned()];
        use RequireApproval::*;
        for (level, plain_asks, iam_asks, lossy_asks) in [
            (Never, false, false, false),
            (AnyChange, true, true, true),
            (Broadening, false, true, true),
            (Destructive, false, false, true),
        ] {
            assert_eq!(level.needs_approval(&plain, &[]), plain_asks, "{level:?} plain");
            assert_eq!(level.needs_approval(&iam, &[]), iam_asks, "{level:?} iam");
            assert_eq!(level.needs_approval(&lossy, &allowed), lossy_asks, "{level:?} allowed loss");
        }
    }

    #[test]
    fn stuck_stacks_get_the_exact_next_command() {
        let says = |s: StackStatus| blocked(&s, "st").unwrap_or_default();
        assert!(says(StackStatus::RollbackComplete).contains("deploy -- destroy --stack-name st"));
        assert!(says(StackStatus::UpdateRollbackFailed)
            .contains("aws cloudformation continue-update-rollback --stack-name st"));
        assert!(says(StackStatus::DeleteFailed).contains("destroy --stack-name st"));
        assert!(says(StackStatus::UpdateInProgress).contains("busy (UPDATE_IN_PROGRESS)"));
        for fine in [
            StackStatus::CreateComplete,
            StackStatus::UpdateComplete,
            StackStatus::UpdateRollbackComplete,
            StackStatus::ReviewInProgress,
        ] {
            assert_eq!(blocked(&fine, "st"), None, "{fine:?}");
        }
    }
}
