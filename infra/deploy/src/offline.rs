//! Layer 1, offline: what deploying `new` over a stack running `old` would do, from the two
//! templates alone (no AWS, no credentials), so a pull request is stopped before anyone deploys.
//! Both templates are read as deployed with their parameters' defaults ([`conditions`]: a
//! resource whose condition turns false is removed). Each changed resource becomes a change
//! shaped like CloudFormation's own (`Replacement` predicted from the type's create-only
//! properties, property-level details with before and after values), replacements carry on to
//! the resources that read them ([`cascade`]), and the same [`guard`](crate::guard) judges it;
//! dropping a `Retain` deletion or update-replace policy from a stateful resource is refused
//! too. Parameters, outputs and the other sections are compared apart ([`SectionChange`]).

mod cascade;
mod conditions;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cfn::constructs::{cloudwatch, dynamodb, events, lambda, logs, sns, sqs};
use cfn::template::ResourceProperties;
use serde::Serialize;
use serde_json::Value;

pub use self::cascade::{references, Reference};
use self::conditions::{Conditions, Presence};
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

fn section<'t>(t: &'t Value, name: &str) -> impl Iterator<Item = (&'t String, &'t Value)> {
    t.get(name).and_then(Value::as_object).into_iter().flatten()
}

/// One side's resources or outputs as deployed: presence under its condition, and the entry
/// with `Fn::If` resolved and its `Condition` taken out (presence says it).
struct Entry {
    presence: Presence,
    condition: Option<Value>,
    value: Value,
}

fn entries(t: &Value, conditions: &Conditions, name: &str) -> BTreeMap<String, Entry> {
    section(t, name)
        .map(|(id, v)| {
            let mut value = conditions.resolve(v).unwrap_or(Value::Null);
            if let Some(o) = value.as_object_mut() {
                o.remove("Condition");
            }
            let entry = Entry { presence: conditions.presence(v), condition: conditions.spelled_out(v), value };
            (id.clone(), entry)
        })
        .collect()
}

const ABSENT: Entry = Entry { presence: Presence::Absent, condition: None, value: Value::Null };

/// What happens to an entry, from its presence before and after.
enum Fate {
    Unchanged,
    Added,
    Removed,
    /// Compare the definitions.
    Compared,
    /// Whether it stays depends on a value only known at deploy time.
    Either,
}

fn fate(before: &Entry, after: &Entry) -> Fate {
    use Presence::*;
    match (before.presence, after.presence) {
        (Absent, Absent) => Fate::Unchanged,
        (Absent, _) => Fate::Added,
        (_, Absent) => Fate::Removed,
        // The same unknown condition on both sides: present in both or in neither.
        (Unknown, Unknown) if before.condition == after.condition => Fate::Compared,
        (_, Unknown) => Fate::Either,
        // Maybe there before: at worst an addition, which a comparison does not hide.
        (Present | Unknown, Present) => Fate::Compared,
    }
}

/// The changes deploying `new` over `old` would make, as CloudFormation would list them.
pub fn changes(old: &Value, new: &Value) -> Vec<ResourceChange> {
    let (c_old, c_new) = (Conditions::of(old), Conditions::of(new));
    let (before, after) = (entries(old, &c_old, "Resources"), entries(new, &c_new, "Resources"));
    let mut out = Vec::new();
    for id in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        let (b, a) = (before.get(id).unwrap_or(&ABSENT), after.get(id).unwrap_or(&ABSENT));
        let type_of = |e: &Entry| e.value["Type"].as_str().unwrap_or_default().to_owned();
        let change = |action: Action, ty: String| ResourceChange::new(action, id, &ty);
        match fate(b, a) {
            Fate::Unchanged => {}
            Fate::Added => out.push(change(Action::Add, type_of(a))),
            Fate::Removed => out.push(change(Action::Remove, type_of(b))),
            Fate::Either => out.push(change(Action::Dynamic, type_of(a))),
            Fate::Compared if b.value == a.value => {}
            Fate::Compared => out.push(modified(id, &b.value, &a.value)),
        }
    }
    let kept = |id: &str| {
        let (b, a) = (before.get(id).unwrap_or(&ABSENT), after.get(id).unwrap_or(&ABSENT));
        matches!(fate(b, a), Fate::Compared | Fate::Either)
    };
    let present: BTreeMap<String, Value> = after
        .iter()
        .filter(|(_, e)| e.presence != Presence::Absent)
        .map(|(id, e)| (id.clone(), e.value.clone()))
        .collect();
    cascade::cascade(&mut out, &present, kept, create_only);
    out
}

/// A resource in both templates whose definition differs: its property-level details, and
/// whether that replaces it.
fn modified(id: &str, b: &Value, a: &Value) -> ResourceChange {
    let empty = serde_json::Map::new();
    let type_of = |r: &Value| r["Type"].as_str().unwrap_or_default().to_owned();
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
                requires_recreation: None,
            },
            ..Default::default()
        });
    }
    let replacement = match (replaced, create_only(&ty).is_none()) {
        (true, true) => Replacement::Conditional,
        (true, false) => Replacement::True,
        (false, _) => Replacement::False,
    };
    ResourceChange { replacement: Some(replacement), details, ..ResourceChange::new(Action::Modify, id, &ty) }
}

/// A change outside `Resources`: a parameter, output, condition or mapping, or a whole other
/// section (`Description`, `Metadata`, `Transform`, `Rules`, ...). Outputs are compared as
/// deployed (their conditions and `Fn::If` evaluated with the parameters' defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SectionChange {
    pub section: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub change: ChangeType,
}

impl fmt::Display for SectionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8}{}", self.change.as_str(), self.section)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// The sections compared entry by entry.
const KEYED: &[&str] = &["Parameters", "Outputs", "Conditions", "Mappings", "Rules"];

/// What differs between `old` and `new` outside `Resources`.
pub fn section_changes(old: &Value, new: &Value) -> Vec<SectionChange> {
    let kind = |b: Option<&Value>, a: Option<&Value>| match (b, a) {
        (None, None) => None,
        (None, Some(_)) => Some(ChangeType::Add),
        (Some(_), None) => Some(ChangeType::Remove),
        (Some(b), Some(a)) => (b != a).then_some(ChangeType::Modify),
    };
    let mut out = Vec::new();
    let (c_old, c_new) = (Conditions::of(old), Conditions::of(new));
    let outputs = |t: &Value, c: &Conditions| -> BTreeMap<String, Value> {
        entries(t, c, "Outputs")
            .into_iter()
            .filter(|(_, e)| e.presence != Presence::Absent)
            .map(|(id, e)| (id, serde_json::json!([e.condition, e.value])))
            .collect()
    };
    let keys = |t: &Value| t.as_object().into_iter().flat_map(|o| o.keys().cloned()).collect::<BTreeSet<_>>();
    for name in keys(old).union(&keys(new)) {
        if name == "Resources" {
            continue;
        }
        if KEYED.contains(&name.as_str()) {
            let (b, a): (BTreeMap<String, Value>, BTreeMap<String, Value>) = if name == "Outputs" {
                (outputs(old, &c_old), outputs(new, &c_new))
            } else {
                let all = |t: &Value| section(t, name).map(|(k, v)| (k.clone(), v.clone())).collect();
                (all(old), all(new))
            };
            for entry in b.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
                if let Some(change) = kind(b.get(entry), a.get(entry)) {
                    out.push(SectionChange { section: name.clone(), name: Some(entry.clone()), change });
                }
            }
        } else if let Some(change) = kind(old.get(name), new.get(name)) {
            out.push(SectionChange { section: name.clone(), name: None, change });
        }
    }
    out
}

/// Everything the offline diff finds: the guard's review of the resource changes, and the
/// changes elsewhere in the template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub review: Review,
    pub sections: Vec<SectionChange>,
}

impl Diff {
    /// Nothing at all differs, as deployed.
    pub fn is_empty(&self) -> bool {
        self.review.changes.is_empty() && self.review.refused.is_empty() && self.sections.is_empty()
    }

    /// The review's summary, with the section changes under `template`.
    pub fn summary(&self) -> Value {
        let mut s = self.review.summary();
        s["template"] = serde_json::to_value(&self.sections).unwrap_or_default();
        s
    }
}

/// The resource table, the changes that follow from a replacement, the other sections.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.review.changes.is_empty() {
            write!(f, "{}", self.review.table())?;
        }
        for c in &self.review.changes {
            let caused =
                c.details.iter().filter_map(|d| Some((d.target.name.as_deref()?, d.causing_entity.as_deref()?)));
            for (property, cause) in caused {
                writeln!(f, "  {}.{property} follows {cause}", c.logical_resource_id)?;
            }
            if c.action == Action::Dynamic {
                writeln!(f, "  {}: its condition is only known at deploy time", c.logical_resource_id)?;
            }
        }
        if !self.sections.is_empty() {
            writeln!(f, "outside Resources:")?;
            for s in &self.sections {
                writeln!(f, "  {s}")?;
            }
        }
        Ok(())
    }
}

/// The offline diff of deploying `new` over `old`.
pub fn diff(old: &Value, new: &Value) -> Diff {
    let mut review = guard::review(changes(old, new));
    review.refused.extend(guard::compare_templates(old, new));
    Diff { review, sections: section_changes(old, new) }
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
        diff(&template(), new).review
    }

    #[test]
    fn the_same_template_changes_nothing() {
        assert!(diff(&template(), &template()).is_empty());
    }

    #[test]
    fn every_create_only_property_of_every_emitted_type_is_a_replacement() {
        // An address makes the conditional subscription part of the stack too.
        let t = with(|t| t["Parameters"]["AlarmEmail"]["Default"] = json!("ops@example.com"));
        let mut seen = BTreeSet::new();
        for (id, resource) in section(&t, "Resources") {
            let ty = resource["Type"].as_str().unwrap();
            let properties = create_only(ty).unwrap_or_else(|| panic!("{ty} is emitted but has no create-only entry"));
            seen.insert(ty.to_owned());
            for property in properties.iter() {
                let mut new = t.clone();
                new["Resources"][id]["Properties"][*property] = json!("changed");
                let changes = changes(&t, &new);
                let own = changes.iter().find(|c| c.logical_resource_id == *id).expect("its own change");
                assert_eq!(own.replacement, Some(Replacement::True), "{id}.{property}");
                // Whatever else changes reads the replaced resource.
                for other in changes.iter().filter(|c| c.logical_resource_id != *id) {
                    assert!(
                        other
                            .details
                            .iter()
                            .all(|d| d.causing_entity.as_deref().is_some_and(|e| e.starts_with(id.as_str()))),
                        "{id}.{property}: {other:?}"
                    );
                }
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
        let r = diff(&old, &new).review;
        assert_eq!(r.changes[0].replacement, Some(Replacement::Conditional));
        assert!(r.refused[0].why.contains("Conditional"), "a bucket holds data");
    }

    #[test]
    fn a_stateful_resource_whose_condition_turns_false_is_removed() {
        let guarded = |t: &mut Value, condition: Value| {
            t["Conditions"]["KeepTable"] = condition;
            t["Resources"]["MetricsTable"]["Condition"] = json!("KeepTable");
        };
        let old = with(|t| guarded(t, json!({"Fn::Equals": ["a", "a"]})));
        let review = |new: &Value| diff(&old, new).review;
        // The condition tests the AlarmEmail parameter, whose default is empty.
        let off = with(|t| guarded(t, json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]})));
        let r = review(&off);
        let removed = r.changes.iter().find(|c| c.logical_resource_id == "MetricsTable").unwrap();
        assert_eq!(removed.action, Action::Remove);
        assert_eq!(r.refused[0].rule, "removed", "{:?}", r.refused);
        // The same condition, true with a changed default: nothing happens to the table.
        let on = with(|t| {
            guarded(t, json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}));
            t["Parameters"]["AlarmEmail"]["Default"] = json!("ops@example.com");
        });
        let r = review(&on);
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        assert!(r.changes.iter().all(|c| c.logical_resource_id != "MetricsTable"));
        assert!(r.changes.iter().any(|c| c.logical_resource_id == "AlarmEmailSubscription" && c.action == Action::Add));
        // A condition only known at deploy time: the table may go, which is refused.
        let unknown = with(|t| guarded(t, json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]})));
        let r = review(&unknown);
        assert_eq!(r.refused[0].rule, "dynamic", "{:?}", r.refused);
        assert!(diff(&unknown, &unknown).is_empty(), "the same unknown condition changes nothing");
    }

    #[test]
    fn fn_if_is_resolved_before_comparing() {
        let retention = |v: Value| with(|t| t["Resources"]["MetricsQueue"]["Properties"]["MessageRetentionPeriod"] = v);
        let same = retention(json!({"Fn::If": ["HasAlarmEmail", 60, 345_600]}));
        assert!(verdict(&same).changes.is_empty(), "HasAlarmEmail is false by default: the same value");
        let shorter = retention(json!({"Fn::If": ["HasAlarmEmail", 345_600, 60]}));
        assert_eq!(verdict(&shorter).refused[0].rule, "sqs-retention-shortened");
    }

    #[test]
    fn replacing_the_queue_replaces_its_mapping_and_changes_what_reads_it() {
        let r = verdict(&with(|t| t["Resources"]["MetricsQueue"]["Properties"]["QueueName"] = json!("Other")));
        let change =
            |id: &str| r.changes.iter().find(|c| c.logical_resource_id == id).unwrap_or_else(|| panic!("{id}"));
        let mapping = change("PublishMetricsQueueMapping");
        assert_eq!(mapping.replacement, Some(Replacement::True));
        assert_eq!(mapping.details[0].causing_entity.as_deref(), Some("MetricsQueue.Arn"));
        assert!(r.iam.iter().any(|c| c.logical_resource_id == "MetricsQueuePolicy"), "{:?}", r.iam);
        assert!(r.refused.iter().any(|x| x.change.logical_resource_id == "MetricsQueue"));
    }

    #[test]
    fn parameters_outputs_and_other_sections_are_compared() {
        let d = diff(
            &template(),
            &with(|t| {
                t["Parameters"]["AlarmEmail"]["Description"] = json!("changed");
                t["Outputs"].as_object_mut().unwrap().remove("EventBusName");
                t["Outputs"]["New"] = json!({"Value": "x"});
                t["Description"] = json!("changed");
            }),
        );
        assert!(d.review.changes.is_empty());
        let shown: Vec<String> = d.sections.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "Modify  Description",
                "Remove  Outputs EventBusName",
                "Add     Outputs New",
                "Modify  Parameters AlarmEmail"
            ]
        );
        assert!(!d.is_empty());
        assert_eq!(d.summary()["template"][1]["name"], "EventBusName");
        // An output whose condition stays false is not there before or after.
        let hidden = with(|t| t["Outputs"]["Hidden"] = json!({"Condition": "HasAlarmEmail", "Value": "x"}));
        assert!(diff(&template(), &hidden).sections.iter().all(|s| s.section != "Outputs"));
    }
}
