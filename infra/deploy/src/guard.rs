//! The data-safety guard: reads a change set's resource changes and refuses those that would
//! lose data held by a stateful resource (removal, replacement, a deletion policy action, or an
//! in-place change that destroys data), unless the user names that resource. It fails closed:
//! a stateful `Modify` whose answer lacks what the guard needs counts as a possible replacement.

use std::fmt;

use cfn::template::ResourceProperties;
use serde::{Deserialize, Serialize};

/// A CloudFormation enumeration read from an answer: the values AWS documents, and any other as
/// `Unknown` (AWS adds values), which the guard treats as the worst case.
macro_rules! aws_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Unknown(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $(stringify!($variant) => $name::$variant,)+
                    _ => $name::Unknown(s),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_enum!(
    /// What a change does to a resource (`ResourceChange.Action`).
    Action { Add, Modify, Remove, Import, Dynamic }
);
aws_enum!(
    /// Whether a `Modify` replaces the resource (`ResourceChange.Replacement`).
    Replacement { True, False, Conditional }
);
aws_enum!(
    /// What CloudFormation does with the old resource under its policies
    /// (`ResourceChange.PolicyAction`).
    PolicyAction { Delete, Retain, Snapshot, ReplaceAndDelete, ReplaceAndRetain, ReplaceAndSnapshot }
);
aws_enum!(
    /// Which part of the resource a detail changes (`ResourceTargetDefinition.Attribute`).
    Attribute { Properties, Metadata, CreationPolicy, UpdatePolicy, DeletionPolicy, UpdateReplacePolicy, Tags }
);
aws_enum!(
    /// How a detail changes its attribute (`ResourceTargetDefinition.AttributeChangeType`).
    ChangeType { Add, Remove, Modify, SyncWithActual }
);
aws_enum!(
    /// Whether changing a detail's property replaces the resource
    /// (`ResourceTargetDefinition.RequiresRecreation`).
    RequiresRecreation { Never, Conditionally, Always }
);
aws_enum!(
    /// Whether a detail's new value is known before the update (`ResourceChangeDetail.Evaluation`).
    Evaluation { Static, Dynamic }
);
aws_enum!(
    /// What causes a detail (`ResourceChangeDetail.ChangeSource`).
    ChangeSource { ResourceReference, ParameterReference, ResourceAttribute, DirectModification, Automatic }
);

/// Resource types that hold data a replacement or removal would lose: the list cfn-lint ships
/// (`cfnlint/data/AdditionalSpecs/StatefulResources.json`, cfn-lint 1.58.0); a test checks this
/// copy against the installed cfn-lint.
pub const STATEFUL_TYPES: &[&str] = &[
    "AWS::Backup::BackupVault",
    "AWS::CloudFormation::Stack",
    "AWS::Cognito::UserPool",
    "AWS::DocDB::DBCluster",
    "AWS::DocDB::DBInstance",
    "AWS::DynamoDB::GlobalTable",
    "AWS::DynamoDB::Table",
    "AWS::EC2::Volume",
    "AWS::EFS::FileSystem",
    "AWS::EMR::Cluster",
    "AWS::ElastiCache::CacheCluster",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::Elasticsearch::Domain",
    "AWS::FSx::FileSystem",
    "AWS::KMS::Key",
    "AWS::Kinesis::Stream",
    "AWS::Logs::LogGroup",
    "AWS::Neptune::DBCluster",
    "AWS::Neptune::DBInstance",
    "AWS::OpenSearchService::Domain",
    "AWS::Organizations::Account",
    "AWS::QLDB::Ledger",
    "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance",
    "AWS::Redshift::Cluster",
    "AWS::S3::Bucket",
    "AWS::SDB::Domain",
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
];

/// Whether `resource_type` holds data.
pub fn is_stateful(resource_type: &str) -> bool {
    STATEFUL_TYPES.contains(&resource_type)
}

/// One resource change, as DescribeChangeSet reports it (`Changes[].ResourceChange`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceChange {
    pub action: Action,
    pub logical_resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_resource_id: Option<String>,
    pub resource_type: String,
    /// Absent for adds and removals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Replacement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_action: Option<PolicyAction>,
    /// Property-level changes (with values when the change set is described with
    /// `IncludePropertyValues`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

impl ResourceChange {
    /// A change of `action` to the resource `logical_id` of `resource_type`, nothing more known.
    pub fn new(action: Action, logical_id: &str, resource_type: &str) -> Self {
        ResourceChange {
            action,
            logical_resource_id: logical_id.to_owned(),
            physical_resource_id: None,
            resource_type: resource_type.to_owned(),
            replacement: None,
            policy_action: None,
            details: Vec::new(),
        }
    }
}

/// One entry of `ResourceChange.Details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Detail {
    #[serde(default)]
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<ChangeSource>,
    /// The resource (`Id`), attribute (`Id.Attr`) or parameter whose change causes this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causing_entity: Option<String>,
}

/// What a detail changes (`ResourceTargetDefinition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<Attribute>,
    /// The top-level property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The property path, e.g. `/Properties/RedrivePolicy/maxReceiveCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_change_type: Option<ChangeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_recreation: Option<RequiresRecreation>,
}

impl Target {
    fn is(&self, property: &str) -> bool {
        self.name.as_deref() == Some(property)
    }

    fn removed(&self) -> bool {
        self.attribute_change_type == Some(ChangeType::Remove)
    }

    /// The path's last segment (the property itself for a top-level change).
    fn leaf(&self) -> Option<&str> {
        self.path.as_deref().and_then(|p| p.rsplit('/').next()).or(self.name.as_deref())
    }
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

/// A change the guard refuses: the rule (its id), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub change: ResourceChange,
    pub rule: &'static str,
    pub why: String,
}

/// What the guard makes of a change set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

fn number(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| v.trim().trim_matches('"').parse().ok())
}

fn json_field(v: Option<&str>, field: &str) -> Option<serde_json::Value> {
    v.and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok()).and_then(|j| j.get(field).cloned())
}

fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().trim_matches('"').eq_ignore_ascii_case("true"))
}

/// SQS keeps messages 4 days unless told otherwise.
const SQS_DEFAULT_RETENTION: u64 = 345_600;

const QUEUE: &str = cfn::constructs::sqs::Queue::TYPE;
const TABLE: &str = cfn::constructs::dynamodb::Table::TYPE;
const LOG_GROUP: &str = cfn::constructs::logs::LogGroup::TYPE;

/// How long DynamoDB keeps point-in-time recovery data when no period is given (DynamoDB
/// Developer Guide, "Point-in-time recovery": 1 to 35 days, default 35).
const PITR_DEFAULT_DAYS: u64 = 35;

/// A data-loss rule on a change to any stateful resource, whatever its type.
pub struct ChangeRule {
    pub id: &'static str,
    /// What it refuses, in words (`deploy rules`, the README's table).
    pub refuses: &'static str,
    /// Why this change falls under it, or `None`.
    check: fn(&ResourceChange) -> Option<String>,
}

/// A data-loss rule on an in-place change of one property of one resource type: a change that
/// destroys data although nothing is replaced.
pub struct PropertyRule {
    pub id: &'static str,
    pub resource_type: &'static str,
    pub property: &'static str,
    pub refuses: &'static str,
    /// Why this property change falls under it, or `None`.
    check: fn(&Target) -> Option<String>,
}

/// Every rule on a stateful resource's change. The first that applies says why; a replacement
/// or removal is the whole story, so the deletion-policy rule only looks at what is kept.
pub const CHANGE_RULES: &[ChangeRule] = &[
    ChangeRule {
        id: "not-described",
        refuses: "a resource AWS says its change set's description left out, and that neither description shows",
        check: |c| {
            c.resource_type.is_empty().then(|| {
                "the change set's description leaves this change out (incomplete with property values, absent without): taken as a loss".to_owned()
            })
        },
    },
    ChangeRule {
        id: "removed",
        refuses: "a stateful resource removed from the stack",
        check: |c| (c.action == Action::Remove).then(|| "removed from the stack".to_owned()),
    },
    ChangeRule {
        id: "replaced",
        refuses: "a stateful resource replaced (`Replacement: True`)",
        check: |c| {
            (c.action == Action::Modify && c.replacement == Some(Replacement::True))
                .then(|| "replaced: a new, empty resource takes its place".to_owned())
        },
    },
    ChangeRule {
        id: "maybe-replaced",
        refuses: "a stateful resource that may be replaced: `Replacement: Conditional`, a value the guard does not know, or none given (fails closed)",
        check: |c| match (&c.action, &c.replacement) {
            (Action::Modify, Some(Replacement::Conditional)) => {
                Some("may be replaced (Replacement: Conditional)".to_owned())
            }
            (Action::Modify, Some(Replacement::Unknown(r))) => {
                Some(format!("may be replaced (Replacement: {r}, unknown to this guard: taken as Conditional)"))
            }
            (Action::Modify, None) => {
                Some("may be replaced (the change set gives no Replacement: taken as Conditional)".to_owned())
            }
            _ => None,
        },
    },
    ChangeRule {
        id: "dynamic",
        refuses: "a `Dynamic` change to a stateful resource (only known at deploy time), or one under a condition the offline diff cannot evaluate",
        check: |c| {
            (c.action == Action::Dynamic).then(|| "may be replaced (the change is only known at deploy time)".to_owned())
        },
    },
    ChangeRule {
        id: "unknown-action",
        refuses: "an action the guard does not know, on a stateful resource",
        check: |c| match &c.action {
            Action::Unknown(a) => Some(format!("action {a} is unknown to this guard: taken as a loss")),
            _ => None,
        },
    },
    ChangeRule {
        id: "policy-deletes",
        refuses: "a `PolicyAction` of `Delete` or `ReplaceAndDelete` (or one the guard does not know)",
        check: |c| {
            let kept = matches!(c.action, Action::Add | Action::Import)
                || (c.action == Action::Modify && c.replacement == Some(Replacement::False));
            match &c.policy_action {
                Some(p @ (PolicyAction::Delete | PolicyAction::ReplaceAndDelete)) if kept => {
                    Some(format!("deleted with its data (PolicyAction: {p})"))
                }
                Some(PolicyAction::Unknown(p)) if kept => {
                    Some(format!("PolicyAction {p} is unknown to this guard: taken as a deletion"))
                }
                _ => None,
            }
        },
    },
];

/// Every rule on an in-place property change.
pub const PROPERTY_RULES: &[PropertyRule] = &[
    PropertyRule {
        id: "sqs-retention-shortened",
        resource_type: QUEUE,
        property: "MessageRetentionPeriod",
        refuses: "a queue's message retention shortened (SQS deletes the older messages)",
        check: |t| {
            let before = number(t.before_value.as_deref()).unwrap_or(SQS_DEFAULT_RETENTION);
            let after = if t.removed() { Some(SQS_DEFAULT_RETENTION) } else { number(t.after_value.as_deref()) };
            match after {
                Some(after) if after >= before => None,
                Some(after) => Some(format!(
                    "MessageRetentionPeriod shortened from {before} s to {after} s: SQS deletes the messages older than that"
                )),
                None => Some("MessageRetentionPeriod changes to a value the change set does not show".to_owned()),
            }
        },
    },
    PropertyRule {
        id: "sqs-redrive-loosened",
        resource_type: QUEUE,
        property: "RedrivePolicy",
        refuses: "a queue's redrive policy removed, or its `maxReceiveCount` lowered",
        check: |t| {
            let (before, after) = if t.leaf() == Some("maxReceiveCount") {
                (number(t.before_value.as_deref()), number(t.after_value.as_deref()))
            } else {
                let count = |v: Option<&str>| json_field(v, "maxReceiveCount").and_then(|n| n.as_u64());
                (count(t.before_value.as_deref()), count(t.after_value.as_deref()))
            };
            if t.removed() || (before.is_some() && after.is_none() && t.leaf() != Some("deadLetterTargetArn")) {
                return Some("the redrive policy is removed: failing messages would never reach the DLQ".to_owned());
            }
            match (before, after) {
                (Some(b), Some(a)) if a < b => {
                    Some(format!("maxReceiveCount lowered from {b} to {a}: healthy messages may reach the DLQ"))
                }
                _ => None,
            }
        },
    },
    PropertyRule {
        id: "table-recovery-off",
        resource_type: TABLE,
        property: "PointInTimeRecoverySpecification",
        refuses: "a table's point-in-time recovery turned off",
        check: |t| {
            let enabled = |v: Option<&str>| {
                is_true(v) || json_field(v, "PointInTimeRecoveryEnabled").is_some_and(|e| e == serde_json::json!(true))
            };
            (enabled(t.before_value.as_deref()) && (t.removed() || !enabled(t.after_value.as_deref())))
                .then(|| "point-in-time recovery is turned off".to_owned())
        },
    },
    PropertyRule {
        id: "table-recovery-shortened",
        resource_type: TABLE,
        property: "PointInTimeRecoverySpecification",
        refuses: "a table's point-in-time recovery period shortened (older restore points are lost)",
        check: |t| {
            let days = |v: Option<&str>| {
                if t.leaf() == Some("RecoveryPeriodInDays") {
                    number(v)
                } else {
                    json_field(v, "RecoveryPeriodInDays").and_then(|n| n.as_u64())
                }
            };
            let before = days(t.before_value.as_deref()).unwrap_or(PITR_DEFAULT_DAYS);
            let after = if t.removed() {
                PITR_DEFAULT_DAYS
            } else {
                days(t.after_value.as_deref()).unwrap_or(PITR_DEFAULT_DAYS)
            };
            (after < before).then(|| {
                format!(
                    "point-in-time recovery keeps {after} days instead of {before}: the older restore points are lost"
                )
            })
        },
    },
    PropertyRule {
        id: "logs-retention-shortened",
        resource_type: LOG_GROUP,
        property: "RetentionInDays",
        refuses: "a log group's retention shortened (CloudWatch Logs deletes the older events)",
        check: |t| {
            // No retention keeps events forever: setting one, or a shorter one, deletes history.
            let before = number(t.before_value.as_deref());
            let after = if t.removed() { None } else { number(t.after_value.as_deref()) };
            match (before, after) {
                (_, None) => None,
                (Some(b), Some(a)) if a >= b => None,
                (b, Some(a)) => Some(format!(
                    "RetentionInDays shortened from {} to {a} days: CloudWatch Logs deletes the older events",
                    b.map_or_else(|| "never expiring".to_owned(), |b| b.to_string())
                )),
            }
        },
    },
    PropertyRule {
        id: "table-protection-off",
        resource_type: TABLE,
        property: "DeletionProtectionEnabled",
        refuses: "a table's deletion protection turned off",
        check: |t| {
            (is_true(t.before_value.as_deref()) && (t.removed() || !is_true(t.after_value.as_deref())))
                .then(|| "deletion protection is turned off".to_owned())
        },
    },
    PropertyRule {
        id: "table-ttl-changed",
        resource_type: TABLE,
        property: "TimeToLiveSpecification",
        refuses: "a table's TTL specification changed (items may expire that were kept)",
        check: |_| Some("the TTL specification changes: items may expire that were kept, or the reverse".to_owned()),
    },
];

/// In-place changes that destroy data although nothing is replaced, from the details' values:
/// each with the rule that finds it.
fn destructive_in_place(c: &ResourceChange) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for t in c.details.iter().map(|d| &d.target).filter(|t| t.attribute == Some(Attribute::Properties)) {
        for rule in PROPERTY_RULES.iter().filter(|r| r.resource_type == c.resource_type && t.is(r.property)) {
            found.extend((rule.check)(t).map(|why| (rule.id, why)));
        }
    }
    found
}

/// A data-loss rule comparing a stateful resource's old and new declarations (the deployed
/// template and the new one), for what a change set does not show.
pub struct TemplateRule {
    pub id: &'static str,
    pub refuses: &'static str,
    /// Why the new declaration loses what the old one kept (several reasons, or none).
    check: fn(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String>,
}

/// Every rule comparing declarations.
pub const TEMPLATE_RULES: &[TemplateRule] = &[TemplateRule {
    id: "retain-dropped",
    refuses: "`DeletionPolicy` or `UpdateReplacePolicy: Retain` dropped from a stateful resource",
    check: |old, new| {
        ["DeletionPolicy", "UpdateReplacePolicy"]
            .into_iter()
            .filter(|policy| old[policy] == "Retain" && new[policy] != "Retain")
            .map(|policy| format!("{policy}: Retain is dropped: deleting or replacing it would destroy its data"))
            .collect()
    },
}];

/// The stateful resources of both templates (CloudFormation JSON) whose new declaration
/// [`TEMPLATE_RULES`] refuse.
pub fn compare_templates(old: &serde_json::Value, new: &serde_json::Value) -> Vec<Refusal> {
    let mut out = Vec::new();
    let Some(resources) = old["Resources"].as_object() else { return out };
    for (id, before) in resources {
        let ty = before["Type"].as_str().unwrap_or_default();
        let Some(after) = new["Resources"].get(id) else { continue };
        if !is_stateful(ty) {
            continue;
        }
        for rule in TEMPLATE_RULES {
            for why in (rule.check)(before, after) {
                out.push(Refusal { change: ResourceChange::new(Action::Modify, id, ty), rule: rule.id, why });
            }
        }
    }
    out
}

/// Reviews `changes`: what would lose data, and what touches permissions.
pub fn review(changes: Vec<ResourceChange>) -> Review {
    let mut refused = Vec::new();
    let mut iam = Vec::new();
    for c in &changes {
        // A change whose type AWS did not say is judged as the worst case: stateful.
        if is_stateful(&c.resource_type) || c.resource_type.is_empty() {
            let mut why: Vec<(&'static str, String)> =
                CHANGE_RULES.iter().find_map(|r| (r.check)(c).map(|why| (r.id, why))).into_iter().collect();
            if c.action == Action::Modify {
                why.extend(destructive_in_place(c));
            }
            refused.extend(why.into_iter().map(|(rule, why)| Refusal { change: c.clone(), rule, why }));
        }
        if is_permission(&c.resource_type) {
            iam.push(c.clone());
        }
    }
    Review { changes, refused, iam }
}

/// Every rule, as `deploy rules` prints it: id, where it applies, what it refuses.
pub fn rules() -> Vec<(&'static str, String, &'static str)> {
    CHANGE_RULES
        .iter()
        .map(|r| (r.id, "any stateful resource".to_owned(), r.refuses))
        .chain(PROPERTY_RULES.iter().map(|r| (r.id, format!("{} {}", r.resource_type, r.property), r.refuses)))
        .chain(TEMPLATE_RULES.iter().map(|r| (r.id, "any stateful resource, templates compared".to_owned(), r.refuses)))
        .collect()
}

impl Review {
    /// The refusals left once the user allows the resources named in `allowed` (logical IDs).
    pub fn refusals_except<'a>(&'a self, allowed: &'a [String]) -> impl Iterator<Item = &'a Refusal> {
        self.refused.iter().filter(move |r| !allowed.contains(&r.change.logical_resource_id))
    }
}

impl Review {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The review as CI reads it (`--json`): each change, each refusal, each permission change.
    pub fn summary(&self) -> serde_json::Value {
        let change = |c: &ResourceChange| {
            serde_json::json!({"action": c.action, "logicalResourceId": c.logical_resource_id,
                "resourceType": c.resource_type, "replacement": c.replacement})
        };
        serde_json::json!({
            "changes": self.changes.iter().map(change).collect::<Vec<_>>(),
            "refused": self.refused.iter().map(|r| serde_json::json!({
                "logicalResourceId": r.change.logical_resource_id, "resourceType": r.change.resource_type,
                "rule": r.rule, "why": r.why,
            })).collect::<Vec<_>>(),
            "permissions": self.iam.iter().map(change).collect::<Vec<_>>(),
        })
    }

    /// The changes as a table: action, logical ID, type, replacement.
    pub fn table(&self) -> String {
        table(&self.changes)
    }
}

/// The changes as a table, then the permission changes apart.
impl fmt::Display for Review {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table())?;
        if !self.iam.is_empty() {
            write!(f, "IAM and resource-policy changes:\n{}", table(&self.iam))?;
        }
        Ok(())
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
                c.replacement.as_ref().map_or("-", Replacement::as_str),
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

/// The logical IDs of the stateful resources a CloudFormation template (JSON) declares.
pub fn stateful_ids(template: &serde_json::Value) -> std::collections::BTreeSet<String> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"].as_str().is_some_and(is_stateful))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Layer 3, the server: a stack policy that lets every update through except replacing or
/// deleting the stateful resources `protected` names (those of the deployed template and of the
/// new one, so a resource renamed or dropped is protected in the very update that would delete
/// it), so CloudFormation itself refuses those, even from another tool. The logical IDs in
/// `lifted` are left out (for one update, by name).
pub fn stack_policy(protected: &std::collections::BTreeSet<String>, lifted: &[String]) -> serde_json::Value {
    let protected: Vec<String> =
        protected.iter().filter(|id| !lifted.contains(id)).map(|id| format!("LogicalResourceId/{id}")).collect();
    let mut statements =
        vec![serde_json::json!({"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"})];
    if !protected.is_empty() {
        statements.push(serde_json::json!({
            "Effect": "Deny",
            "Action": ["Update:Replace", "Update:Delete"],
            "Principal": "*",
            "Resource": protected,
        }));
    }
    serde_json::json!({ "Statement": statements })
}

/// The resources the stack policy must let a change set replace or delete: those the user
/// named (`--allow-replace`) that the review finds replaced, possibly replaced, removed or
/// deleted by policy. An in-place change needs no lifting (the policy denies only replacement
/// and deletion), and a named resource the change set does not replace stays protected.
pub fn to_lift(review: &Review, allowed: &[String]) -> Vec<String> {
    const REPLACES_OR_DELETES: [&str; 7] =
        ["not-described", "removed", "replaced", "maybe-replaced", "dynamic", "unknown-action", "policy-deletes"];
    let mut ids: Vec<String> = review
        .refused
        .iter()
        .filter(|r| REPLACES_OR_DELETES.contains(&r.rule) && allowed.contains(&r.change.logical_resource_id))
        .map(|r| r.change.logical_resource_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
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
        assert_eq!(r.refused[0].rule, "maybe-replaced");
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
        assert_eq!(r.refused[0].rule, "removed");
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

    fn modify(id: &str, ty: &str, details: serde_json::Value) -> serde_json::Value {
        json!({
            "Action": "Modify", "LogicalResourceId": id, "PhysicalResourceId": "p", "ResourceType": ty,
            "Replacement": "False", "Scope": ["Properties"], "Details": details,
        })
    }

    fn property(name: &str, before: Option<&str>, after: Option<&str>, change: &str) -> serde_json::Value {
        json!([{"Target": {"Attribute": "Properties", "Name": name, "Path": format!("/Properties/{name}"),
            "RequiresRecreation": "Never", "BeforeValue": before, "AfterValue": after, "AttributeChangeType": change},
            "Evaluation": "Static", "ChangeSource": "DirectModification"}])
    }

    fn whys(change: serde_json::Value) -> Vec<String> {
        review(described(change)).refused.into_iter().map(|r| r.why).collect()
    }

    #[test]
    fn a_stateful_modify_without_replacement_fails_closed() {
        let mut c = table_replacement();
        c.as_object_mut().unwrap().remove("Replacement");
        let w = whys(c);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("taken as Conditional"), "{w:?}");
        // A stateless resource's Modify without the field is not the guard's business.
        let mut c = table_replacement();
        c.as_object_mut().unwrap().remove("Replacement");
        c["ResourceType"] = "AWS::Lambda::Function".into();
        assert!(whys(c).is_empty());
    }

    #[test]
    fn values_the_guard_does_not_know_count_as_losses() {
        let mut c = table_replacement();
        c["Action"] = "Obliterate".into();
        assert!(whys(c)[0].contains("action Obliterate is unknown"));
        let mut c = table_replacement();
        c["Replacement"] = "Maybe".into();
        assert!(whys(c)[0].contains("Replacement: Maybe, unknown"));
        let mut c = modify("MetricsTable", "AWS::DynamoDB::Table", json!([]));
        c["PolicyAction"] = "Shred".into();
        assert!(whys(c)[0].contains("PolicyAction Shred is unknown"));
        // Known values read back as they were written.
        let back = serde_json::to_value(&described(table_replacement())[0]).unwrap();
        assert_eq!((back["Action"].clone(), back["Replacement"].clone()), (json!("Modify"), json!("True")));
        assert_eq!(Action::from("Dynamic"), Action::Dynamic);
        assert_eq!(Action::from("Other").as_str(), "Other");
    }

    #[test]
    fn a_deleting_policy_action_is_refused() {
        for (action, refused) in [("Delete", true), ("ReplaceAndDelete", true), ("Retain", false), ("Snapshot", false)]
        {
            let mut c = modify("MetricsTable", "AWS::DynamoDB::Table", json!([]));
            c["PolicyAction"] = action.into();
            assert_eq!(!whys(c).is_empty(), refused, "{action}");
        }
    }

    #[test]
    fn shortening_a_queues_retention_is_refused_lengthening_is_not() {
        let q = |before, after, change| {
            modify("MetricsQueue", "AWS::SQS::Queue", property("MessageRetentionPeriod", before, after, change))
        };
        assert!(whys(q(Some("345600"), Some("345599"), "Modify"))[0].contains("shortened from 345600 s to 345599 s"));
        assert!(whys(q(Some("345600"), Some("345600"), "Modify")).is_empty());
        assert!(whys(q(Some("345600"), Some("1209600"), "Modify")).is_empty());
        // Removing the property falls back to SQS's 4 days: shorter than 14, not than 1.
        assert!(!whys(q(Some("1209600"), None, "Remove")).is_empty());
        assert!(whys(q(Some("86400"), None, "Remove")).is_empty());
        // Added where there was none: compared with the default.
        assert!(!whys(q(None, Some("60"), "Add")).is_empty());
        // No value to compare: fail closed.
        assert!(whys(q(Some("345600"), None, "Modify"))[0].contains("does not show"));
    }

    #[test]
    fn removing_or_loosening_the_redrive_policy_is_refused() {
        let policy =
            |n: u32| format!("{{\"deadLetterTargetArn\":\"arn:aws:sqs:us-east-1:1:dlq\",\"maxReceiveCount\":{n}}}");
        let q = |before: Option<String>, after: Option<String>, change| {
            modify(
                "MetricsQueue",
                "AWS::SQS::Queue",
                property("RedrivePolicy", before.as_deref(), after.as_deref(), change),
            )
        };
        assert!(whys(q(Some(policy(10)), None, "Remove"))[0].contains("redrive policy is removed"));
        assert!(whys(q(Some(policy(10)), Some(policy(9)), "Modify"))[0].contains("lowered from 10 to 9"));
        assert!(whys(q(Some(policy(10)), Some(policy(10)), "Modify")).is_empty());
        assert!(whys(q(Some(policy(10)), Some(policy(20)), "Modify")).is_empty());
        // The same as a path into the policy.
        let mut leaf = property("RedrivePolicy", Some("10"), Some("5"), "Modify");
        leaf[0]["Target"]["Path"] = "/Properties/RedrivePolicy/maxReceiveCount".into();
        assert!(!whys(modify("MetricsQueue", "AWS::SQS::Queue", leaf.clone())).is_empty());
        leaf[0]["Target"]["AfterValue"] = "11".into();
        assert!(whys(modify("MetricsQueue", "AWS::SQS::Queue", leaf)).is_empty());
    }

    #[test]
    fn turning_off_recovery_or_protection_or_changing_ttl_is_refused() {
        let t = |name, before: Option<&str>, after: Option<&str>, change| {
            modify("MetricsTable", "AWS::DynamoDB::Table", property(name, before, after, change))
        };
        let pitr = |on: bool| format!("{{\"PointInTimeRecoveryEnabled\":{on}}}");
        assert!(whys(t("PointInTimeRecoverySpecification", Some(&pitr(true)), Some(&pitr(false)), "Modify"))[0]
            .contains("point-in-time recovery is turned off"));
        assert!(!whys(t("PointInTimeRecoverySpecification", Some(&pitr(true)), None, "Remove")).is_empty());
        assert!(whys(t("PointInTimeRecoverySpecification", Some(&pitr(false)), Some(&pitr(true)), "Modify")).is_empty());
        assert!(whys(t("DeletionProtectionEnabled", Some("true"), Some("false"), "Modify"))[0]
            .contains("deletion protection"));
        assert!(whys(t("DeletionProtectionEnabled", Some("false"), Some("true"), "Modify")).is_empty());
        assert!(!whys(t("TimeToLiveSpecification", Some("{}"), Some("{}"), "Modify")).is_empty());
        // Throughput is not data.
        assert!(whys(t("ProvisionedThroughput", Some("{}"), Some("{}"), "Modify")).is_empty());
    }

    #[test]
    fn only_the_named_resources_are_let_through() {
        let r = review(described(table_replacement()));
        assert_eq!(r.refusals_except(&[]).count(), 1);
        assert_eq!(r.refusals_except(&["MetricsQueue".to_owned()]).count(), 1);
        assert_eq!(r.refusals_except(&["MetricsTable".to_owned()]).count(), 0);
    }

    #[test]
    fn the_stack_policy_denies_replacing_or_deleting_each_stateful_resource() {
        let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
        let template: serde_json::Value =
            serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap();
        let ids = stateful_ids(&template);
        let policy = stack_policy(&ids, &[]);
        let deny = &policy["Statement"][1];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Action"], json!(["Update:Replace", "Update:Delete"]));
        let resources: Vec<&str> = deny["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        for id in ["MetricsTable", "MetricsQueue", "MetricsDeadLetterQueue", "PublishMetricsLogGroup"] {
            assert!(resources.contains(&format!("LogicalResourceId/{id}").as_str()), "{id}: {resources:?}");
        }
        assert!(!resources.iter().any(|r| r.ends_with("/PublishMetrics")), "functions hold no data");
        assert_eq!(
            policy["Statement"][0],
            json!({"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"})
        );
        // Named resources are let through for one update; the rest stay protected.
        let temporary = stack_policy(&ids, &["MetricsTable".to_owned()]);
        let resources = temporary["Statement"][1]["Resource"].as_array().unwrap();
        assert!(!resources.contains(&json!("LogicalResourceId/MetricsTable")));
        assert!(resources.contains(&json!("LogicalResourceId/MetricsQueue")));
        // A stateful resource only the deployed template has (renamed, or dropped) is protected.
        let mut deployed = template.clone();
        deployed["Resources"]["OldTable"] = json!({"Type": "AWS::DynamoDB::Table"});
        let both: std::collections::BTreeSet<String> = stateful_ids(&deployed).union(&ids).cloned().collect();
        assert!(stack_policy(&both, &[]).to_string().contains("LogicalResourceId/OldTable"));
    }

    #[test]
    fn only_what_the_change_set_replaces_or_deletes_is_lifted_for_a_named_resource() {
        let mut replaced = ResourceChange::new(Action::Modify, "MetricsTable", TABLE);
        replaced.replacement = Some(Replacement::True);
        let mut shortened = ResourceChange::new(Action::Modify, "MetricsQueue", QUEUE);
        shortened.replacement = Some(Replacement::False);
        shortened.details = vec![Detail {
            target: Target {
                attribute: Some(Attribute::Properties),
                name: Some("MessageRetentionPeriod".into()),
                before_value: Some("345600".into()),
                after_value: Some("60".into()),
                ..Default::default()
            },
            ..Default::default()
        }];
        let r = review(vec![replaced, shortened, ResourceChange::new(Action::Remove, "Gone", QUEUE)]);
        let all = ["MetricsTable".to_owned(), "MetricsQueue".to_owned(), "Elsewhere".to_owned()];
        // The queue's change is in place: the policy needs no lifting for it; Gone was not named.
        assert_eq!(to_lift(&r, &all), ["MetricsTable"]);
        assert!(to_lift(&r, &[]).is_empty());
        assert!(to_lift(&review(vec![]), &all).is_empty(), "named, but nothing replaced: nothing lifted");
    }

    #[test]
    fn stateful_types_are_cfn_lints_list() {
        assert!(is_stateful(cfn::constructs::dynamodb::Table::TYPE));
        assert!(is_stateful(cfn::constructs::sqs::Queue::TYPE));
        assert!(is_stateful("AWS::Logs::LogGroup"));
        assert!(!is_stateful("AWS::Lambda::Function"));
    }

    fn target_of(name: &str, path: &str, before: Option<&str>, after: Option<&str>, change: ChangeType) -> Target {
        Target {
            attribute: Some(Attribute::Properties),
            name: Some(name.into()),
            path: Some(path.into()),
            before_value: before.map(str::to_owned),
            after_value: after.map(str::to_owned),
            attribute_change_type: Some(change),
            requires_recreation: None,
        }
    }

    fn in_place(ty: &str, target: Target) -> Vec<&'static str> {
        let mut c = ResourceChange::new(Action::Modify, "R", ty);
        c.replacement = Some(Replacement::False);
        c.details = vec![Detail { target, ..Default::default() }];
        review(vec![c]).refused.iter().map(|r| r.rule).collect()
    }

    #[test]
    fn shortening_a_log_groups_retention_is_refused_lengthening_or_removing_it_is_not() {
        let retention = |before, after, change| {
            in_place(LOG_GROUP, target_of("RetentionInDays", "/Properties/RetentionInDays", before, after, change))
        };
        assert_eq!(retention(Some("14"), Some("7"), ChangeType::Modify), ["logs-retention-shortened"]);
        assert_eq!(retention(None, Some("3653"), ChangeType::Add), ["logs-retention-shortened"], "from never expiring");
        assert!(retention(Some("7"), Some("14"), ChangeType::Modify).is_empty());
        assert!(retention(Some("14"), Some("14"), ChangeType::Modify).is_empty());
        assert!(retention(Some("14"), None, ChangeType::Remove).is_empty(), "removed: kept forever");
    }

    #[test]
    fn shortening_the_recovery_period_is_refused_lengthening_it_is_not() {
        let period = |before: Option<&str>, after: Option<&str>| {
            in_place(
                TABLE,
                target_of(
                    "PointInTimeRecoverySpecification",
                    "/Properties/PointInTimeRecoverySpecification/RecoveryPeriodInDays",
                    before,
                    after,
                    ChangeType::Modify,
                ),
            )
        };
        assert_eq!(period(Some("35"), Some("7")), ["table-recovery-shortened"]);
        assert_eq!(period(None, Some("30")), ["table-recovery-shortened"], "from the default 35");
        assert!(period(Some("7"), Some("35")).is_empty());
        assert!(period(Some("35"), Some("35")).is_empty());
        // The whole specification as one value, as AWS may show it.
        let whole = in_place(
            TABLE,
            target_of(
                "PointInTimeRecoverySpecification",
                "/Properties/PointInTimeRecoverySpecification",
                Some(r#"{"PointInTimeRecoveryEnabled":true,"RecoveryPeriodInDays":20}"#),
                Some(r#"{"PointInTimeRecoveryEnabled":true,"RecoveryPeriodInDays":10}"#),
                ChangeType::Modify,
            ),
        );
        assert_eq!(whole, ["table-recovery-shortened"]);
    }

    #[test]
    fn rule_ids_are_unique_and_every_rule_is_in_the_readme() {
        let rules = rules();
        let ids: std::collections::BTreeSet<&str> = rules.iter().map(|r| r.0).collect();
        assert_eq!(ids.len(), rules.len(), "unique ids: {rules:?}");
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        for (id, applies, refuses) in &rules {
            let row = format!("| `{id}` | {applies} | {refuses} |");
            assert!(readme.lines().any(|l| l.starts_with(&row)), "the README's table of rules lacks\n{row}");
        }
    }

    #[test]
    fn dropping_retain_from_a_stateful_resource_is_refused_keeping_it_is_not() {
        let template = |policy: &str| {
            serde_json::json!({"Resources": {
                "T": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": policy, "UpdateReplacePolicy": "Retain"},
                "F": {"Type": "AWS::Lambda::Function", "DeletionPolicy": policy},
            }})
        };
        let refused = compare_templates(&template("Retain"), &template("Delete"));
        assert_eq!(refused.len(), 1, "only the stateful one: {refused:?}");
        assert_eq!((refused[0].rule, refused[0].change.logical_resource_id.as_str()), ("retain-dropped", "T"));
        assert!(refused[0].why.starts_with("DeletionPolicy: Retain is dropped"), "{}", refused[0].why);
        assert!(compare_templates(&template("Retain"), &template("Retain")).is_empty());
        assert!(compare_templates(&template("Delete"), &template("Delete")).is_empty());
    }
}
