//! Change sets: created, described (all pages, completed when a description with values is
//! incomplete), reviewed by the guard, deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter};
use aws_sdk_cloudformation::Client as Cfn;
use serde::Serialize;

use super::*;
use crate::error::{sdk, DeployError};
use crate::guard::{self, ResourceChange, Review};

type Result<T, E = DeployError> = std::result::Result<T, E>;

/// What DescribeChangeSet's `StatusReason` says when, described with property values, it left
/// out the changes of resources whose values failed validation (the change set itself is still
/// `CREATE_COMPLETE`): "[WARN] --include-property-values option can return incomplete
/// ChangeSet data because: ... Logical Id: X ...".
pub const INCOMPLETE_MARKER: &str = "--include-property-values option can return incomplete ChangeSet data";

/// The logical IDs an incomplete description's reason names (`Logical Id: X`).
pub fn named_logical_ids(reason: &str) -> Vec<String> {
    reason
        .split("Logical Id: ")
        .skip(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_alphanumeric).collect::<String>())
        .filter(|id| !id.is_empty())
        .collect()
}

/// `with` (described with property values) completed by `without` (described without): every
/// change of `without` whose logical ID `with` lacks is added (its values unknown, so the guard
/// reads it without them, failing closed), and every ID `reason` names that neither has becomes a
/// change of unknown type, which the guard refuses.
pub fn merge_incomplete(
    mut with: Vec<ResourceChange>,
    without: Vec<ResourceChange>,
    reason: &str,
) -> Vec<ResourceChange> {
    let known = |changes: &[ResourceChange], id: &str| changes.iter().any(|c| c.logical_resource_id == id);
    for c in without {
        if !known(&with, &c.logical_resource_id) {
            with.push(c);
        }
    }
    for id in named_logical_ids(reason) {
        if !known(&with, &id) {
            with.push(ResourceChange::new(guard::Action::Unknown("(not described)".to_owned()), &id, ""));
        }
    }
    with
}

/// Waits for the change set `id` of `stack` and reviews it (with the properties' before and
/// after values, so the guard sees what an in-place change does). `None` when CloudFormation
/// found nothing to change (the change set is deleted again); an executable change set with no
/// resource changes (only outputs changed, say) is a change. A description AWS says is
/// incomplete is completed by one without property values ([`merge_incomplete`]).
pub async fn review_change_set(cfn: &Cfn, stack: &str, id: &str, progress: Report<'_>) -> Result<Option<Review>> {
    let mut waited = 0;
    loop {
        let out = cfn
            .describe_change_set()
            .change_set_name(id)
            .stack_name(stack)
            .include_property_values(true)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
        match out.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let mut changes = described(cfn, stack, id, true).await?;
                if let Some(reason) = out.status_reason().filter(|r| r.contains(INCOMPLETE_MARKER)) {
                    progress(Progress::Warning {
                        message: format!(
                            "AWS described change set {id} incompletely with property values ({reason}): described again without them, and merged"
                        ),
                    });
                    changes = merge_incomplete(changes, described(cfn, stack, id, false).await?, reason);
                }
                return Ok(Some(guard::review(changes)));
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = out.status_reason().unwrap_or_default().to_owned();
                delete_change_set(cfn, stack, id, progress).await;
                if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") {
                    return Ok(None);
                }
                return Err(DeployError::ChangeSetFailed { stack: stack.to_owned(), reason });
            }
            _ => {
                waited += 1;
                if waited > 300 {
                    return Err(DeployError::ChangeSetTimeout(id.to_owned()));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The stack a change set belongs to and its `ExecutionStatus`, as AWS describes it now.
pub async fn change_set_state(cfn: &Cfn, stack: &str, id: &str) -> Result<(Option<String>, Option<String>)> {
    let out = cfn
        .describe_change_set()
        .change_set_name(id)
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
    Ok((out.stack_name().map(str::to_owned), out.execution_status().map(|s| s.as_str().to_owned())))
}

/// Every resource change of a complete change set, all pages, with or without property values.
async fn described(cfn: &Cfn, stack: &str, id: &str, values: bool) -> Result<Vec<ResourceChange>> {
    let mut changes = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .describe_change_set()
            .change_set_name(id)
            .stack_name(stack)
            .include_property_values(values)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
        changes.extend(page.changes().iter().filter_map(|c| c.resource_change()).map(convert));
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(changes),
        }
    }
}

/// A change set that exists, and what it would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub stack: String,
    /// The change set's ID (its ARN on AWS).
    pub id: String,
    pub review: Review,
}

/// What a change set is created from.
pub struct ChangeSetRequest {
    pub template: TemplateSource,
    pub parameters: BTreeMap<String, String>,
    /// Parameters that take their previous values (`UsePreviousValue`), as the CDK keeps what
    /// a deploy does not give.
    pub keep: Vec<String>,
    /// Every tag the stack is to have ([`merged_tags`]): a change set's tags replace the
    /// stack's.
    pub tags: BTreeMap<String, String>,
    /// UPDATE when the stack exists, CREATE otherwise.
    pub exists: bool,
    /// Adopt resources that exist under the template's names (`ImportExistingResources`).
    pub import_existing: bool,
}

/// Creates a change set, waits for it, and reviews it. `None` when there is nothing to change
/// (the change set is deleted again).
pub async fn plan(
    cfn: &Cfn,
    stack: &str,
    request: ChangeSetRequest,
    progress: Report<'_>,
) -> Result<Option<PlannedChange>> {
    let ChangeSetRequest { template, parameters, keep, tags, exists, import_existing } = request;
    // Unique per call: two plans in one second (a diff, then a deploy) must not collide.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("deploy-{}-{:09}", now.as_secs(), now.subsec_nanos());
    let mut create = cfn
        .create_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .change_set_type(if exists { ChangeSetType::Update } else { ChangeSetType::Create })
        .capabilities(Capability::CapabilityIam);
    if import_existing {
        create = create.import_existing_resources(true);
    }
    for (k, v) in &tags {
        create = create.tags(aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build());
    }
    create = match template {
        TemplateSource::Body(b) => create.template_body(b),
        TemplateSource::Url(u) => create.template_url(u),
    };
    for (k, v) in &parameters {
        create = create.parameters(Parameter::builder().parameter_key(k).parameter_value(v).build());
    }
    for k in &keep {
        create = create.parameters(Parameter::builder().parameter_key(k).use_previous_value(true).build());
    }
    let id = create
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("create a change set for {stack}"), &e))?
        .id()
        .unwrap_or(&name)
        .to_owned();

    Ok(review_change_set(cfn, stack, &id, progress).await?.map(|review| PlannedChange {
        stack: stack.to_owned(),
        id,
        review,
    }))
}

/// The stack's tags with `tag` set: what a change set must carry not to drop any.
pub fn merged_tags(existing: &BTreeMap<String, String>, tag: &(String, String)) -> BTreeMap<String, String> {
    let mut tags = existing.clone();
    tags.insert(tag.0.clone(), tag.1.clone());
    tags
}

fn convert(c: &aws_sdk_cloudformation::types::ResourceChange) -> ResourceChange {
    let details = c
        .details()
        .iter()
        .filter_map(|d| Some((d, d.target()?)))
        .map(|(d, t)| guard::Detail {
            target: guard::Target {
                attribute: t.attribute().map(|a| a.as_str().into()),
                name: t.name().map(str::to_owned),
                path: t.path().map(str::to_owned),
                before_value: t.before_value().map(str::to_owned),
                after_value: t.after_value().map(str::to_owned),
                attribute_change_type: t.attribute_change_type().map(|a| a.as_str().into()),
                requires_recreation: t.requires_recreation().map(|r| r.as_str().into()),
            },
            evaluation: d.evaluation().map(|e| e.as_str().into()),
            change_source: d.change_source().map(|s| s.as_str().into()),
            causing_entity: d.causing_entity().map(str::to_owned),
        })
        .collect();
    ResourceChange {
        // No action at all is not a change this guard knows: it fails closed on it.
        action: c.action().map_or(guard::Action::Unknown(String::new()), |a| a.as_str().into()),
        logical_resource_id: c.logical_resource_id().unwrap_or_default().to_owned(),
        physical_resource_id: c.physical_resource_id().map(str::to_owned),
        resource_type: c.resource_type().unwrap_or_default().to_owned(),
        replacement: c.replacement().map(|r| r.as_str().into()),
        policy_action: c.policy_action().map(|p| p.as_str().into()),
        details,
    }
}

/// Deletes a change set; a failure is only reported, it does not hide the real outcome.
pub async fn delete_change_set(cfn: &Cfn, stack: &str, id: &str, progress: Report<'_>) {
    if let Err(e) = cfn.delete_change_set().change_set_name(id).stack_name(stack).send().await {
        progress(Progress::ChangeSetLeftOver { id: id.to_owned(), message: sdk(&e) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_description_is_completed_and_what_stays_missing_is_a_loss() {
        let reason = "[WARN] --include-property-values option can return incomplete ChangeSet data because: Logical Id: MetricsTable, failed property validation; Logical Id: Gone9, failed property validation";
        assert_eq!(named_logical_ids(reason), ["MetricsTable", "Gone9"]);
        assert!(named_logical_ids("nothing named").is_empty());
        let modify = |id: &str, ty: &str| ResourceChange::new(guard::Action::Modify, id, ty);
        let with = vec![modify("PublishMetrics", "AWS::Lambda::Function")];
        let mut table = modify("MetricsTable", "AWS::DynamoDB::Table");
        table.replacement = Some(guard::Replacement::True);
        let without = vec![modify("PublishMetrics", "AWS::Lambda::Function"), table];
        let merged = merge_incomplete(with, without, reason);
        let ids: Vec<&str> = merged.iter().map(|c| c.logical_resource_id.as_str()).collect();
        assert_eq!(ids, ["PublishMetrics", "MetricsTable", "Gone9"]);
        let review = guard::review(merged);
        let refused: Vec<(&str, &str)> =
            review.refused.iter().map(|r| (r.change.logical_resource_id.as_str(), r.rule)).collect();
        assert_eq!(refused, [("MetricsTable", "replaced"), ("Gone9", "not-described")]);
        // Without the marker's IDs, a dropped change the second description has is still seen.
        let complete = merge_incomplete(
            vec![],
            vec![modify("Q", "AWS::SQS::Queue")],
            "[WARN] --include-property-values option can return incomplete ChangeSet data",
        );
        assert_eq!(guard::review(complete).refused[0].rule, "maybe-replaced");
    }
}
