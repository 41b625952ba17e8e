//! The data-safety guard: reads a change set's resource changes and refuses those that remove
//! or replace a stateful resource (the table, the queues), unless the user allows it.

use cfn::template::ResourceProperties;
use serde::Deserialize;

/// Resource types that hold data a replacement or removal would lose.
pub const STATEFUL_TYPES: [&str; 2] = [cfn::constructs::dynamodb::Table::TYPE, cfn::constructs::sqs::Queue::TYPE];

/// One resource change, as DescribeChangeSet reports it (`Changes[].ResourceChange`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceChange {
    /// `Add`, `Modify`, `Remove`, `Import` or `Dynamic`.
    pub action: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    pub resource_type: String,
    /// `True`, `False` or `Conditional`; absent for adds and removals.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// A DescribeChangeSet response, as far as the guard reads it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeSetDescription {
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    #[serde(default)]
    pub resource_change: Option<ResourceChange>,
}

impl ChangeSetDescription {
    pub fn resource_changes(&self) -> Vec<ResourceChange> {
        self.changes.iter().filter_map(|c| c.resource_change.clone()).collect()
    }
}

/// A change the guard refuses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub change: ResourceChange,
    pub why: &'static str,
}

/// What the guard makes of a change set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    pub changes: Vec<ResourceChange>,
    /// Removals and replacements of stateful resources.
    pub refused: Vec<Refusal>,
    /// Changes to permissions: IAM roles and policies, resource policies.
    pub iam: Vec<ResourceChange>,
}

fn is_permission(resource_type: &str) -> bool {
    resource_type.starts_with("AWS::IAM::")
        || resource_type == <cfn::constructs::iam::QueuePolicyProperties as ResourceProperties>::TYPE
        // Not emitted by the library, but permissions all the same.
        || matches!(resource_type, "AWS::Lambda::Permission" | "AWS::Events::EventBusPolicy")
}

/// Reviews `changes`: what would be lost, and what touches permissions.
pub fn review(changes: Vec<ResourceChange>) -> Review {
    let mut refused = Vec::new();
    let mut iam = Vec::new();
    for c in &changes {
        if STATEFUL_TYPES.contains(&c.resource_type.as_str()) {
            let why = match (c.action.as_str(), c.replacement.as_deref()) {
                ("Remove", _) => Some("removed from the stack"),
                ("Modify", Some("True")) => Some("replaced: a new, empty resource takes its place"),
                ("Modify", Some("Conditional")) => Some("may be replaced (Replacement: Conditional)"),
                ("Dynamic", _) => Some("may be replaced (the change is only known at deploy time)"),
                _ => None,
            };
            if let Some(why) = why {
                refused.push(Refusal { change: c.clone(), why });
            }
        }
        if is_permission(&c.resource_type) {
            iam.push(c.clone());
        }
    }
    Review { changes, refused, iam }
}

impl Review {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes as a table: action, logical ID, type, replacement.
    pub fn table(&self) -> String {
        table(&self.changes)
    }
}

/// Rows of `changes` under a header, columns aligned.
pub fn table(changes: &[ResourceChange]) -> String {
    let rows: Vec<[&str; 4]> = changes
        .iter()
        .map(|c| {
            [
                c.action.as_str(),
                c.logical_resource_id.as_str(),
                c.resource_type.as_str(),
                c.replacement.as_deref().unwrap_or("-"),
            ]
        })
        .collect();
    let header = ["ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"];
    let width = |i: usize| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let line = |r: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = line(header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A DescribeChangeSet response in the shape AWS documents, with one resource change.
    fn described(change: serde_json::Value) -> Vec<ResourceChange> {
        let response = json!({
            "ChangeSetName": "deploy-1",
            "StackName": "serverlesspresso-metrics",
            "ExecutionStatus": "AVAILABLE",
            "Status": "CREATE_COMPLETE",
            "Changes": [{"Type": "Resource", "ResourceChange": change}],
        });
        serde_json::from_value::<ChangeSetDescription>(response).unwrap().resource_changes()
    }

    fn table_replacement() -> serde_json::Value {
        json!({
            "Action": "Modify",
            "LogicalResourceId": "MetricsTable",
            "PhysicalResourceId": "serverlesspresso-metrics-table",
            "ResourceType": "AWS::DynamoDB::Table",
            "Replacement": "True",
            "Scope": ["Properties"],
            "Details": [{
                "Target": {"Attribute": "Properties", "Name": "KeySchema", "RequiresRecreation": "Always"},
                "Evaluation": "Static",
                "ChangeSource": "DirectModification",
            }],
        })
    }

    #[test]
    fn a_table_replacement_is_refused() {
        let r = review(described(table_replacement()));
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].change.logical_resource_id, "MetricsTable");
        assert!(r.refused[0].why.contains("replaced"));
    }

    #[test]
    fn a_conditional_replacement_is_refused() {
        let mut c = table_replacement();
        c["Replacement"] = "Conditional".into();
        c["LogicalResourceId"] = "MetricsQueue".into();
        c["ResourceType"] = "AWS::SQS::Queue".into();
        let r = review(described(c));
        assert_eq!(r.refused.len(), 1);
        assert!(r.refused[0].why.contains("Conditional"));
    }

    #[test]
    fn a_queue_removal_is_refused() {
        let r = review(described(json!({
            "Action": "Remove",
            "LogicalResourceId": "MetricsDeadLetterQueue",
            "PhysicalResourceId": "https://sqs.us-east-1.amazonaws.com/123456789012/MetricsQueue-DLQ",
            "ResourceType": "AWS::SQS::Queue",
            "Scope": [],
            "Details": [],
        })));
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].why, "removed from the stack");
    }

    #[test]
    fn an_iam_policy_change_is_listed_apart_and_allowed() {
        let r = review(described(json!({
            "Action": "Modify",
            "LogicalResourceId": "PublishMetricsRole",
            "PhysicalResourceId": "serverlesspresso-metrics-PublishMetricsRole-1ABC",
            "ResourceType": "AWS::IAM::Role",
            "Replacement": "False",
            "Scope": ["Properties"],
            "Details": [{"Target": {"Attribute": "Properties", "Name": "Policies", "RequiresRecreation": "Never"}, "Evaluation": "Static", "ChangeSource": "DirectModification"}],
        })));
        assert!(r.refused.is_empty());
        assert_eq!(r.iam.len(), 1);
        let policy = review(described(
            json!({"Action": "Add", "LogicalResourceId": "MetricsQueuePolicy", "ResourceType": "AWS::SQS::QueuePolicy"}),
        ));
        assert_eq!(policy.iam.len(), 1);
    }

    #[test]
    fn a_plain_property_modify_passes() {
        let r = review(described(json!({
            "Action": "Modify",
            "LogicalResourceId": "MetricsTable",
            "PhysicalResourceId": "serverlesspresso-metrics-table",
            "ResourceType": "AWS::DynamoDB::Table",
            "Replacement": "False",
            "Scope": ["Properties"],
            "Details": [{"Target": {"Attribute": "Properties", "Name": "ProvisionedThroughput", "RequiresRecreation": "Never"}, "Evaluation": "Static", "ChangeSource": "DirectModification"}],
        })));
        assert!(r.refused.is_empty());
        assert!(r.iam.is_empty());
        assert!(!r.is_empty());
    }

    #[test]
    fn a_no_op_has_nothing_to_review() {
        let response = json!({"ChangeSetName": "deploy-1", "Status": "FAILED",
            "StatusReason": "The submitted information didn't contain changes. Submit different information to create a change set.",
            "Changes": []});
        let r = review(serde_json::from_value::<ChangeSetDescription>(response).unwrap().resource_changes());
        assert!(r.is_empty());
        assert!(r.refused.is_empty());
    }

    #[test]
    fn adds_of_stateful_resources_pass_and_the_table_aligns() {
        let r = review(described(
            json!({"Action": "Add", "LogicalResourceId": "MetricsTable", "ResourceType": "AWS::DynamoDB::Table"}),
        ));
        assert!(r.refused.is_empty());
        assert_eq!(
            r.table(),
            "ACTION  LOGICAL ID    TYPE                  REPLACEMENT\nAdd     MetricsTable  AWS::DynamoDB::Table  -\n"
        );
    }
}
