//! Reads and writes of a stack: status, events followed to the end, policy, protection,
//! outputs, resources, parameters, tags and the deployed template.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_cloudformation::types::{StackStatus, TemplateStage};
use aws_sdk_cloudformation::Client as Cfn;

use super::*;
use crate::error::{is_missing_stack, DeployError};
use crate::status::StackState;

type Result<T, E = DeployError> = std::result::Result<T, E>;

/// The stack as DescribeStacks reports it, or `None` when there is no such stack.
pub async fn describe(cfn: &Cfn, stack: &str) -> Result<Option<aws_sdk_cloudformation::types::Stack>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if is_missing_stack(&e) => Ok(None),
        Err(e) => Err(DeployError::aws(format!("describe stack {stack}"), &e)),
    }
}

/// The stack's status, or `None` when there is no such stack.
pub async fn stack_status(cfn: &Cfn, stack: &str) -> Result<Option<StackStatus>> {
    Ok(describe(cfn, stack).await?.and_then(|s| s.stack_status().cloned()))
}

/// The tags of a described stack.
pub fn tags_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// IDs of the events the stack has now, all pages, so that [`follow`] reports only newer ones
/// (by ID, not by time: the local clock may differ from AWS's).
pub async fn event_ids(cfn: &Cfn, stack: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut pages = cfn.describe_stack_events().stack_name(stack).into_paginator().send();
    while let Some(Ok(page)) = pages.next().await {
        ids.extend(page.stack_events().iter().filter_map(|e| e.event_id().map(str::to_owned)));
    }
    ids
}

/// The events not in `seen`, oldest first: pages (newest first) are read until one holds an
/// event already seen, so a long history costs one page per poll, and a burst of more than a
/// page is not cut short.
async fn new_events(
    cfn: &Cfn,
    stack: &str,
    seen: &HashSet<String>,
) -> std::result::Result<
    Vec<aws_sdk_cloudformation::types::StackEvent>,
    aws_sdk_cloudformation::error::SdkError<
        aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsError,
    >,
> {
    let mut fresh = Vec::new();
    let mut pages = cfn.describe_stack_events().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page?;
        let before = fresh.len();
        fresh.extend(page.stack_events().iter().filter(|e| !seen.contains(e.event_id().unwrap_or_default())).cloned());
        if fresh.len() - before < page.stack_events().len() {
            break;
        }
    }
    fresh.reverse();
    Ok(fresh)
}

/// Reports stack events until the stack settles; `Ok(None)` on success, else how it failed.
/// When `deleting`, a stack that is gone counts as success. An update's settled status counts
/// only once the stack's own event with that status has arrived: read right after
/// ExecuteChangeSet, DescribeStacks may still show the status from before the update.
pub async fn follow(
    cfn: &Cfn,
    stack: &str,
    mut seen: HashSet<String>,
    deleting: bool,
    progress: Report<'_>,
) -> Result<Option<StackFailure>> {
    let mut first_failure: Option<String> = None;
    let mut unexecuted = 0;
    // The status of the newest event of the stack itself since following began.
    let mut stack_event: Option<String> = None;
    loop {
        let events = match new_events(cfn, stack, &seen).await {
            Ok(events) => events,
            Err(e) if deleting && is_missing_stack(&e) => return Ok(None),
            Err(e) => return Err(DeployError::aws(format!("read the events of {stack}"), &e)),
        };
        for e in events {
            seen.insert(e.event_id().unwrap_or_default().to_owned());
            let event = StackEvent {
                time: e.timestamp().map(|t| t.to_string()).unwrap_or_default(),
                logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
                resource_type: e.resource_type().unwrap_or_default().to_owned(),
                status: e.resource_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: e.resource_status_reason().filter(|r| !r.is_empty()).map(str::to_owned),
            };
            if event.resource_type == STACK_TYPE && event.logical_id == stack {
                stack_event = Some(event.status.clone());
            }
            if event.failed() && first_failure.is_none() {
                if let Some(reason) = &event.reason {
                    first_failure = Some(format!("{}: {reason}", event.logical_id));
                }
            }
            progress(Progress::StackEvent(event));
        }
        match stack_status(cfn, stack).await? {
            None if deleting => return Ok(None),
            None => return Err(DeployError::Disappeared(stack.to_owned())),
            // Executed, yet still waiting for a change set: after a minute, it never started
            // (another change set was executed, or it was deleted) instead of waiting forever.
            Some(StackStatus::ReviewInProgress) if !deleting => {
                unexecuted += 1;
                if unexecuted > 30 {
                    return Err(DeployError::NotStarted(stack.to_owned()));
                }
            }
            Some(status) => {
                let confirmed = deleting || stack_event.as_deref() == Some(status.as_str());
                match status.settled() {
                    Some(ok) if confirmed => {
                        let ok = ok && !(deleting && status != StackStatus::DeleteComplete);
                        return Ok((!ok).then(|| StackFailure {
                            stack: stack.to_owned(),
                            status: status.as_str().to_owned(),
                            first_failure,
                        }));
                    }
                    // Settled, but not by this update (yet): a minute of that and it never began.
                    Some(_) if stack_event.is_none() => {
                        unexecuted += 1;
                        if unexecuted > 30 {
                            return Err(DeployError::NotStarted(stack.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The type CloudFormation gives a stack's own events.
const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// The stack's policy as CloudFormation holds it (`None`: it has none).
pub async fn stack_policy(cfn: &Cfn, stack: &str) -> Result<Option<serde_json::Value>> {
    let out = cfn
        .get_stack_policy()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("read the stack policy of {stack}"), &e))?;
    match out.stack_policy_body() {
        None | Some("") => Ok(None),
        // A policy that is not JSON is not ours: it differs from what the stack must have.
        Some(body) => Ok(Some(serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())))),
    }
}

/// Sets the stack's policy (what CloudFormation lets an update do to each resource).
pub async fn set_stack_policy(cfn: &Cfn, stack: &str, policy: &serde_json::Value) -> Result<()> {
    cfn.set_stack_policy()
        .stack_name(stack)
        .stack_policy_body(policy.to_string())
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("set the stack policy of {stack}"), &e))?;
    Ok(())
}

/// Turns the stack's termination protection on or off.
pub async fn protect(cfn: &Cfn, stack: &str, on: bool) -> Result<()> {
    cfn.update_termination_protection().stack_name(stack).enable_termination_protection(on).send().await.map_err(
        |e| DeployError::aws(format!("turn termination protection {} for {stack}", if on { "on" } else { "off" }), &e),
    )?;
    Ok(())
}

/// The stack's outputs.
pub async fn outputs(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| DeployError::NoStack(stack.to_owned()))?;
    Ok(outputs_of(&s))
}

/// The outputs of a described stack.
pub fn outputs_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value().unwrap_or_default().to_owned())))
        .collect()
}

/// A resource of a deployed stack: its type and physical ID (empty when the endpoint gives
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub resource_type: String,
    pub physical_id: String,
}

/// The stack's resources, by logical ID: every page of ListStackResources
/// (DescribeStackResources stops at 100).
pub async fn resources(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, Deployed>> {
    let mut out = BTreeMap::new();
    let mut pages = cfn.list_stack_resources().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| DeployError::aws(format!("list the resources of {stack}"), &e))?;
        for r in page.stack_resource_summaries() {
            let deployed = Deployed {
                resource_type: r.resource_type().unwrap_or_default().to_owned(),
                physical_id: r.physical_resource_id().unwrap_or_default().to_owned(),
            };
            out.insert(r.logical_resource_id().unwrap_or_default().to_owned(), deployed);
        }
    }
    Ok(out)
}

/// The parameters the stack was last deployed with.
pub async fn deployed_parameters(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| DeployError::NoStack(stack.to_owned()))?;
    Ok(parameters_of(&s))
}

/// The parameters of a described stack.
pub fn parameters_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_owned(), p.parameter_value().unwrap_or_default().to_owned())))
        .collect()
}

/// Whether the described stack `deployed` already runs `template` with `parameters` (as the
/// CDK CLI checks before deploying): then there is nothing to change.
pub async fn is_current(
    cfn: &Cfn,
    deployed: &aws_sdk_cloudformation::types::Stack,
    template: &serde_json::Value,
    parameters: &BTreeMap<String, String>,
) -> Result<bool> {
    let name = deployed.stack_name().unwrap_or_default();
    Ok(parameters_of(deployed) == *parameters && deployed_template(cfn, name).await? == *template)
}

/// The deployed template (as submitted), parsed.
pub async fn deployed_template(cfn: &Cfn, stack: &str) -> Result<serde_json::Value> {
    let out = cfn
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("get the template of {stack}"), &e))?;
    let body = out.template_body().unwrap_or_default();
    serde_json::from_str(body).or_else(|_| serde_yaml::from_str(body)).map_err(|e: serde_yaml::Error| {
        DeployError::DeployedTemplate { stack: stack.to_owned(), message: e.to_string() }
    })
}
