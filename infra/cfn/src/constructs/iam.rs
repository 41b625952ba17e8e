//! IAM: policy statements, execution roles and SQS queue policies. Grants on the other
//! constructs add statements here; a statement cannot hold a `*` action or resource.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::json;

use super::ConstructRef;
use crate::error::{Error, Result};
use crate::template::{Expr, Resource, ResourceProperties};

/// Named action lists, one per kind of access (in the spirit of AWS CDK's `perms.ts`): every
/// grant takes one of these, so the actions a kind of access needs are written once.
pub mod actions {
    /// Writing items, alone or inside `TransactWriteItems` (which needs the same actions).
    pub const DYNAMODB_WRITE: &[&str] = &["dynamodb:PutItem", "dynamodb:UpdateItem"];
    pub const DYNAMODB_READ: &[&str] = &["dynamodb:GetItem", "dynamodb:Query"];
    /// What a Lambda SQS event source needs.
    pub const SQS_CONSUME: &[&str] = &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"];
    pub const SQS_SEND: &[&str] = &["sqs:SendMessage"];
    pub const EVENTS_PUT: &[&str] = &["events:PutEvents"];
    /// What a function needs to write its logs into an existing log group.
    pub const LOGS_WRITE: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    /// An execution role of this stack (the grant extends its inline policy).
    Role(ConstructRef),
    /// An AWS service acting for one resource of this stack (the grant is a statement of the
    /// target's resource policy, conditioned on `aws:SourceArn`).
    Service { service: &'static str, source: ConstructRef, source_arn: Expr },
}

/// A permission the stack gave, as recorded: tools (the diagram, reviews) read these instead of
/// the rendered policy documents.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub principal: Principal,
    /// The resource of this stack the actions apply to (`None`: one outside it, by ARN).
    pub resource: Option<ConstructRef>,
    pub actions: &'static [&'static str],
    /// What narrows the grant (`Condition`), empty for none.
    pub conditions: Vec<Condition>,
    /// Where the statement lives: the role, or the resource policy.
    pub policy: ConstructRef,
}

/// One IAM condition that narrows a grant: every listed key must match one of its values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Condition {
    operator: &'static str,
    key: &'static str,
    values: Vec<String>,
}

impl Condition {
    /// `StringEquals`: the key (single-valued per request, or per entry for `PutEvents`) is
    /// one of `values`.
    pub fn string_equals(key: &'static str, values: &[&str]) -> Result<Self> {
        Self::new("StringEquals", key, values)
    }

    /// `ForAllValues:StringLike`: every value the request carries for the key matches one of
    /// `values` (`*` and `?` wildcards), as `dynamodb:LeadingKeys` needs.
    pub fn for_all_values_string_like(key: &'static str, values: &[&str]) -> Result<Self> {
        Self::new("ForAllValues:StringLike", key, values)
    }

    fn new(operator: &'static str, key: &'static str, values: &[&str]) -> Result<Self> {
        let who = format!("iam::Condition {operator}");
        let well_formed = matches!(key.split_once(':'), Some((svc, k)) if !svc.is_empty() && !k.is_empty());
        if !well_formed {
            return Err(Error::invalid(who, "key", key, "must be one `service:key` condition key"));
        }
        if values.is_empty() || values.iter().any(|v| v.is_empty()) {
            return Err(Error::invalid(
                who,
                key,
                format!("{values:?}"),
                "needs at least one value, none empty: an empty list would match nothing or everything",
            ));
        }
        if operator.starts_with("ForAllValues:") && values.contains(&"*") {
            return Err(Error::invalid(who, key, "*", "a lone `*` lets every key through: name the keys"));
        }
        let mut values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        values.sort();
        values.dedup();
        Ok(Condition { operator, key, values })
    }

    pub fn key(&self) -> &str {
        self.key
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }
}

/// Anything that can receive a grant: it has an execution role in the stack.
pub trait Grantee {
    /// The role that grants add statements to.
    fn grant_role(&self) -> &ConstructRef;
}

/// One `Allow` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    principal_service: Option<&'static str>,
    actions: Vec<String>,
    resources: Vec<Expr>,
    source_arn: Option<Expr>,
    conditions: Vec<Condition>,
}

impl Statement {
    /// Allows `actions` on `resources`. Each action is `service:Action` without wildcards; no
    /// resource is `*`.
    pub fn allow(actions: &[&str], resources: Vec<Expr>) -> Result<Self> {
        const WHO: &str = "iam::Statement";
        if actions.is_empty() {
            return Err(Error::invalid(WHO, "Action", "[]", "at least one action is needed"));
        }
        for action in actions {
            let well_formed = matches!(action.split_once(':'), Some((svc, act)) if !svc.is_empty() && !act.is_empty());
            if !well_formed || action.contains('*') {
                return Err(Error::invalid(
                    WHO,
                    "Action",
                    action,
                    "must be one `service:Action`, without `*`: grant the exact actions needed",
                ));
            }
        }
        if resources.is_empty() {
            return Err(Error::invalid(WHO, "Resource", "[]", "at least one resource is needed"));
        }
        if resources.iter().any(|r| r.as_literal() == Some("*")) {
            return Err(Error::invalid(WHO, "Resource", "*", "name the resource's ARN instead of `*`"));
        }
        Ok(Statement {
            principal_service: None,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            resources,
            source_arn: None,
            conditions: Vec::new(),
        })
    }

    /// Only when `condition` holds too.
    pub fn when(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self.conditions.sort();
        self
    }

    /// For resource policies: the AWS service allowed to act.
    pub fn for_service(mut self, service: &'static str) -> Self {
        self.principal_service = Some(service);
        self
    }

    /// Only when the request comes from the resource `arn` (`ArnEquals aws:SourceArn`).
    pub fn from_source(mut self, arn: Expr) -> Self {
        self.source_arn = Some(arn);
        self
    }

    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    pub fn resources(&self) -> &[Expr] {
        &self.resources
    }
}

impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("Effect", "Allow")?;
        if let Some(service) = self.principal_service {
            map.serialize_entry("Principal", &json!({ "Service": service }))?;
        }
        map.serialize_entry("Action", &self.actions)?;
        map.serialize_entry("Resource", &self.resources)?;
        let mut conditions = serde_json::Map::new();
        if let Some(arn) = &self.source_arn {
            conditions.insert("ArnEquals".to_owned(), json!({ "aws:SourceArn": arn }));
        }
        for c in &self.conditions {
            let entry = conditions.entry(c.operator).or_insert_with(|| json!({}));
            entry[c.key] = json!(c.values);
        }
        if !conditions.is_empty() {
            map.serialize_entry("Condition", &conditions)?;
        }
        map.end()
    }
}

/// An IAM policy document.
#[derive(Serialize)]
pub struct PolicyDocument<'a, S> {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Statement")]
    statement: &'a [S],
}

fn document<S>(statements: &[S]) -> PolicyDocument<'_, S> {
    PolicyDocument { version: "2012-10-17", statement: statements }
}

/// The statement of a role's trust policy: `service` may assume the role.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRole {
    effect: &'static str,
    principal: ServicePrincipal,
    action: [&'static str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServicePrincipal {
    service: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InlinePolicy<'a> {
    policy_name: String,
    policy_document: PolicyDocument<'a, Statement>,
}

/// The properties of `AWS::IAM::Role`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleProperties<'a> {
    assume_role_policy_document: PolicyDocument<'a, AssumeRole>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<InlinePolicy<'a>>,
}

impl ResourceProperties for RoleProperties<'_> {
    const TYPE: &'static str = "AWS::IAM::Role";
}

/// The properties of `AWS::SQS::QueuePolicy`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueuePolicyProperties<'a> {
    queues: [Expr; 1],
    policy_document: PolicyDocument<'a, Statement>,
}

impl ResourceProperties for QueuePolicyProperties<'_> {
    const TYPE: &'static str = "AWS::SQS::QueuePolicy";
}

/// Adds `statement` unless an equal one is there, so granting twice is harmless.
fn add_once(statements: &mut Vec<Statement>, statement: Statement) {
    if !statements.contains(&statement) {
        statements.push(statement);
    }
}

/// An execution role assumed by one AWS service, with one inline policy that grants extend.
/// Inline, so the permissions exist before anything that uses the role is created.
#[derive(Clone, Debug)]
pub struct Role {
    construct: ConstructRef,
    assumed_by: &'static str,
    statements: Vec<Statement>,
}

impl Role {
    pub(crate) fn new(construct: ConstructRef, assumed_by: &'static str) -> Self {
        Role { construct, assumed_by, statements: Vec::new() }
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    pub(crate) fn add(&mut self, statement: Statement) {
        add_once(&mut self.statements, statement);
    }

    pub(crate) fn render(&self) -> Result<Resource> {
        let trust = [AssumeRole {
            effect: "Allow",
            principal: ServicePrincipal { service: self.assumed_by },
            action: ["sts:AssumeRole"],
        }];
        let mut policies = Vec::new();
        if !self.statements.is_empty() {
            policies.push(InlinePolicy {
                policy_name: format!("{}Policy", self.construct.id),
                policy_document: document(&self.statements),
            });
        }
        Resource::of(&RoleProperties { assume_role_policy_document: document(&trust), policies })
    }
}

/// The resource policy of one SQS queue.
#[derive(Clone, Debug)]
pub struct QueuePolicy {
    construct: ConstructRef,
    queue: ConstructRef,
    statements: Vec<Statement>,
}

impl QueuePolicy {
    pub(crate) fn new(construct: ConstructRef, queue: ConstructRef) -> Self {
        QueuePolicy { construct, queue, statements: Vec::new() }
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    pub(crate) fn add(&mut self, statement: Statement) {
        add_once(&mut self.statements, statement);
    }

    pub(crate) fn render(&self) -> Result<Resource> {
        Resource::of(&QueuePolicyProperties {
            queues: [self.queue.id.reference()],
            policy_document: document(&self.statements),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_empty_statements_are_refused() {
        let arn = || vec![Expr::lit("arn:aws:sqs:us-east-1:1:q")];
        assert!(Statement::allow(&["sqs:SendMessage"], arn()).is_ok());
        for bad in ["*", "sqs:*", "sqs:Send*", "SendMessage", ":x", "sqs:"] {
            let err = Statement::allow(&[bad], arn()).unwrap_err().to_string();
            assert!(err.contains(&format!("Action = {bad} is invalid")), "{err}");
        }
        assert!(Statement::allow(&[], arn()).is_err());
        assert!(Statement::allow(&["sqs:SendMessage"], vec![]).is_err());
        let err = Statement::allow(&["sqs:SendMessage"], vec![Expr::lit("*")]).unwrap_err().to_string();
        assert!(err.contains("Resource = * is invalid"), "{err}");
    }

    #[test]
    fn statements_serialize_with_principal_and_condition() {
        let s = Statement::allow(&["sqs:SendMessage"], vec![Expr::lit("q")])
            .unwrap()
            .for_service("events.amazonaws.com")
            .from_source(Expr::lit("rule"));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["sqs:SendMessage"],
                "Resource": ["q"],
                "Condition": {"ArnEquals": {"aws:SourceArn": "rule"}},
            })
        );
    }

    #[test]
    fn conditions_serialize_sorted_beside_the_source_condition() {
        let s = Statement::allow(&["events:PutEvents"], vec![Expr::lit("bus")])
            .unwrap()
            .from_source(Expr::lit("rule"))
            .when(Condition::string_equals("events:source", &["b", "a", "a"]).unwrap())
            .when(Condition::for_all_values_string_like("dynamodb:LeadingKeys", &["K#*"]).unwrap());
        assert_eq!(
            serde_json::to_value(&s).unwrap()["Condition"],
            json!({
                "ArnEquals": {"aws:SourceArn": "rule"},
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["K#*"]},
                "StringEquals": {"events:source": ["a", "b"]},
            })
        );
    }

    #[test]
    fn conditions_that_would_match_nothing_or_everything_are_refused() {
        assert!(Condition::string_equals("events:source", &["x"]).is_ok());
        assert!(Condition::for_all_values_string_like("dynamodb:LeadingKeys", &["K*"]).is_ok());
        let cases: [(&str, &[&str], &str); 5] = [
            ("events:source", &[], "needs at least one value"),
            ("events:source", &["x", ""], "needs at least one value"),
            ("source", &["x"], "`service:key`"),
            (":source", &["x"], "`service:key`"),
            ("dynamodb:LeadingKeys", &["*"], "lets every key through"),
        ];
        for (key, values, expected) in cases {
            let err = if key == "dynamodb:LeadingKeys" {
                Condition::for_all_values_string_like("dynamodb:LeadingKeys", values)
            } else {
                Condition::string_equals(key, values)
            }
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{key} {values:?}: {err}");
        }
    }
}
