//! Layer 1, offline: what deploying `new` over a stack running `old` would do, from the two
//! templates alone (no AWS, no credentials), so a pull request is stopped before anyone deploys.
//! Each changed resource becomes a change shaped like CloudFormation's own (`Replacement`
//! predicted from the type's create-only properties, property-level details with before and
//! after values), and the same [`guard`](crate::guard) judges it; dropping a `Retain` deletion
//! or update-replace policy from a stateful resource is refused here too.

use std::collections::BTreeSet;

use cfn::constructs::{cloudwatch, dynamodb, events, lambda, logs, sns, sqs};
use cfn::template::ResourceProperties;
use serde_json::Value;

use crate::guard::{self, Action, Attribute, ChangeType, Detail, Replacement, ResourceChange, Review, Target};

/// The create-only properties of each type the library emits (changing one replaces the
/// resource): the provider schemas' `createOnlyProperties` (a test checks them against the
/// schemas cfn-lint ships), plus what CloudFormation's documentation marks "Update requires:
/// Replacement" beyond them (a table's key schema).
pub const CREATE_ONLY: &[(&str, &[&str])] = &[
    (sqs::Queue::TYPE, &["FifoQueue", "QueueName"]),
    (dynamodb::Table::TYPE, &["TableName", "ImportSourceSpecification", "KeySchema"]),
    (<events::EventBusProperties as ResourceProperties>::TYPE, &["Name"]),
    (events::Rule::TYPE, &["Name"]),
    (lambda::Function::TYPE, &["FunctionName", "PackageType", "TenancyConfig"]),
    (
        lambda::EventSourceMapping::TYPE,
        &["EventSourceArn", "StartingPosition", "StartingPositionTimestamp", "SelfManagedEventSource"],
    ),
    (<logs::LogGroupProperties as ResourceProperties>::TYPE, &["LogGroupName"]),
    (<cfn::constructs::iam::RoleProperties as ResourceProperties>::TYPE, &["Path", "RoleName"]),
    (<cfn::constructs::iam::QueuePolicyProperties as ResourceProperties>::TYPE, &[]),
    (sns::Topic::TYPE, &["TopicName", "FifoTopic"]),
    (<sns::SubscriptionProperties as ResourceProperties>::TYPE, &["Endpoint", "Protocol", "TopicArn"]),
    (cloudwatch::Alarm::TYPE, &["AlarmName"]),
    (cloudwatch::Dashboard::TYPE, &["DashboardName"]),
];

/// The create-only properties of `resource_type`; `None` for a type this table does not know.
pub fn create_only(resource_type: &str) -> Option<&'static [&'static str]> {
    CREATE_ONLY.iter().find(|(t, _)| *t == resource_type).map(|(_, p)| *p)
}

/// A property value as a change set shows it: scalars bare, anything else as JSON.
fn shown(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn resources(t: &Value) -> impl Iterator<Item = (&String, &Value)> {
    t.get("Resources").and_then(Value::as_object).into_iter().flatten()
}

/// The changes deploying `new` over `old` would make, as CloudFormation would list them.
pub fn changes(old: &Value, new: &Value) -> Vec<ResourceChange> {
    let empty = serde_json::Map::new();
    let before: std::collections::BTreeMap<&String, &Value> = resources(old).collect();
    let after: std::collections::BTreeMap<&String, &Value> = resources(new).collect();
    let mut out = Vec::new();
    for id in before.keys().chain(after.keys()).copied().collect::<BTreeSet<_>>() {
        let (b, a) = (before.get(id), after.get(id));
        let type_of = |r: &Value| r["Type"].as_str().unwrap_or_default().to_owned();
        let change = |action: Action, ty: String| ResourceChange::new(action, id, &ty);
        match (b, a) {
            (None, Some(a)) => out.push(change(Action::Add, type_of(a))),
            (Some(b), None) => out.push(change(Action::Remove, type_of(b))),
            (Some(b), Some(a)) if b == a => {}
            (Some(b), Some(a)) => {
                let ty = type_of(a);
                let (pb, pa) = (
                    b.get("Properties").and_then(Value::as_object).unwrap_or(&empty),
                    a.get("Properties").and_then(Value::as_object).unwrap_or(&empty),
                );
                let names: BTreeSet<&String> = pb.keys().chain(pa.keys()).collect();
                let mut details = Vec::new();
                let mut replaced = type_of(b) != ty;
                for name in names {
                    let (vb, va) = (pb.get(name), pa.get(name));
                    if vb == va {
                        continue;
                    }
                    // A type this table does not know: any property may replace it.
                    replaced |= create_only(&ty).is_none_or(|p| p.contains(&name.as_str()));
                    let kind = match (vb, va) {
                        (None, _) => ChangeType::Add,
                        (_, None) => ChangeType::Remove,
                        _ => ChangeType::Modify,
                    };
                    details.push(Detail {
                        target: Target {
                            attribute: Some(Attribute::Properties),
                            name: Some(name.clone()),
                            path: Some(format!("/Properties/{name}")),
                            before_value: shown(vb),
                            after_value: shown(va),
                            attribute_change_type: Some(kind),
                        },
                    });
                }
                let unknown = create_only(&ty).is_none();
                let replacement = if replaced && unknown {
                    Replacement::Conditional
                } else if replaced {
                    Replacement::True
                } else {
                    Replacement::False
                };
                out.push(ResourceChange { replacement: Some(replacement), details, ..change(Action::Modify, ty) });
            }
            (None, None) => {}
        }
    }
    out
}

/// The guard's review of deploying `new` over `old`, offline.
pub fn review(old: &Value, new: &Value) -> Review {
    let mut review = guard::review(changes(old, new));
    review.refused.extend(guard::compare_templates(old, new));
    review
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template() -> Value {
        let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
        serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap()
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut t = template();
        f(&mut t);
        t
    }

    fn verdict(new: &Value) -> Review {
        review(&template(), new)
    }

    #[test]
    fn the_same_template_changes_nothing() {
        let r = verdict(&template());
        assert!(r.changes.is_empty() && r.refused.is_empty());
    }

    #[test]
    fn every_create_only_property_of_every_emitted_type_is_a_replacement() {
        let t = template();
        let mut seen = BTreeSet::new();
        for (id, resource) in resources(&t) {
            let ty = resource["Type"].as_str().unwrap();
            let properties = create_only(ty).unwrap_or_else(|| panic!("{ty} is emitted but has no create-only entry"));
            seen.insert(ty.to_owned());
            for property in properties.iter() {
                let new = with(|t| t["Resources"][id]["Properties"][*property] = json!("changed"));
                let changes = changes(&t, &new);
                assert_eq!(changes.len(), 1, "{id}.{property}");
                assert_eq!(changes[0].replacement, Some(Replacement::True), "{id}.{property}");
            }
        }
        assert!(seen.len() >= 10, "{seen:?}");
    }

    #[test]
    fn replacing_or_removing_the_table_or_a_queue_is_refused() {
        let r = verdict(&with(|t| t["Resources"]["MetricsTable"]["Properties"]["TableName"] = json!("other")));
        assert!(r.refused[0].why.contains("replaced"), "{:?}", r.refused);
        let r = verdict(&with(|t| {
            t["Resources"].as_object_mut().unwrap().remove("MetricsDeadLetterQueue");
        }));
        assert!(r.refused.iter().any(|x| x.change.logical_resource_id == "MetricsDeadLetterQueue"), "{:?}", r.refused);
        let key = json!([{"AttributeName": "Id", "KeyType": "HASH"}]);
        let r = verdict(&with(|t| t["Resources"]["MetricsTable"]["Properties"]["KeySchema"] = key));
        assert!(!r.refused.is_empty());
    }

    #[test]
    fn destructive_in_place_changes_are_refused_harmless_ones_pass() {
        let retention =
            |n: u64| with(|t| t["Resources"]["MetricsQueue"]["Properties"]["MessageRetentionPeriod"] = json!(n));
        assert!(verdict(&retention(3600)).refused[0].why.contains("shortened"));
        assert!(verdict(&retention(1_209_600)).refused.is_empty());
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] = json!(3)
        }));
        assert!(r.refused[0].why.contains("lowered from 10 to 3"), "{:?}", r.refused);
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsQueue"]["Properties"].as_object_mut().unwrap().remove("RedrivePolicy");
        }));
        assert!(r.refused[0].why.contains("redrive policy is removed"));
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsTable"]["Properties"]["PointInTimeRecoverySpecification"] =
                json!({"PointInTimeRecoveryEnabled": false})
        }));
        assert!(r.refused[0].why.contains("point-in-time recovery"));
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsTable"]["Properties"]["DeletionProtectionEnabled"] = json!(false)
        }));
        assert!(r.refused[0].why.contains("deletion protection"));
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsTable"].as_object_mut().unwrap().remove("DeletionPolicy");
        }));
        assert!(r.refused[0].why.contains("DeletionPolicy: Retain is dropped"), "{:?}", r.refused);
        // Harmless: more write capacity, a new alarm threshold, a longer visibility timeout.
        let r = verdict(&with(|t| {
            t["Resources"]["MetricsTable"]["Properties"]["ProvisionedThroughput"]["WriteCapacityUnits"] = json!(50);
            t["Resources"]["QueueAgeAlarm"]["Properties"]["Threshold"] = json!(600.0);
            t["Resources"]["MetricsQueue"]["Properties"]["VisibilityTimeout"] = json!(300);
        }));
        assert_eq!(r.changes.len(), 3);
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        assert!(r.changes.iter().all(|c| c.replacement == Some(Replacement::False)));
    }

    #[test]
    fn an_unknown_type_is_a_possible_replacement() {
        let old = json!({"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": []}}}});
        let new = json!({"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": [1]}}}});
        let r = review(&old, &new);
        assert_eq!(r.changes[0].replacement, Some(Replacement::Conditional));
        assert!(r.refused[0].why.contains("Conditional"), "a bucket holds data");
    }
}
