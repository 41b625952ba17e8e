//! The stack: the scope every construct is built in. It owns the logical-ID namespace, the
//! resources rendered so far, and the IAM documents that grants keep adding to until synth.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};

use super::iam::{Condition, Grant, Principal, QueuePolicy, Role, Statement};
use super::validate;
use crate::error::{Error, Place, Result};
use crate::template::{ConditionExpr, Expr, LogicalId, Output, Parameter, Resource, ResourceProperties, Template};

static NEXT_STACK: AtomicU64 = AtomicU64::new(1);

/// What a logical ID names: a resource of a CloudFormation type (its properties struct's
/// [`ResourceProperties::TYPE`]), or an entry of another section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Resource(&'static str),
    Parameter,
    Condition,
    Output,
}

impl Kind {
    /// A resource of the type `P` renders.
    pub fn of<P: ResourceProperties>() -> Self {
        Kind::Resource(P::TYPE)
    }
}

/// As errors name it: `sqs::Queue` for `AWS::SQS::Queue`.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Resource(type_name) => match type_name.split("::").collect::<Vec<_>>().as_slice() {
                ["AWS", service, resource] => write!(f, "{}::{resource}", service.to_lowercase()),
                _ => f.write_str(type_name),
            },
            Kind::Parameter => f.write_str("Parameter"),
            Kind::Condition => f.write_str("Condition"),
            Kind::Output => f.write_str("Output"),
        }
    }
}

/// What a handle knows of its construct: which stack made it, its logical ID and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstructRef {
    stack: u64,
    pub id: LogicalId,
    pub kind: Kind,
}

impl fmt::Display for ConstructRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind, self.id)
    }
}

/// A resource with a resource policy of its own, so that a service can be given access to it by
/// a statement there (a queue: `AWS::SQS::QueuePolicy`). A capability of the handle's type:
/// [`Stack::grant_service`] takes nothing else, so a service grant on, say, a table does not
/// compile.
pub trait TakesResourcePolicy {
    /// The resource whose policy holds the statement.
    fn policy_holder(&self) -> &ConstructRef;
}

/// One CloudFormation stack under construction.
#[derive(Debug)]
pub struct Stack {
    serial: u64,
    name: String,
    template: Template,
    places: BTreeMap<LogicalId, Place>,
    roles: BTreeMap<LogicalId, Role>,
    queue_policies: BTreeMap<LogicalId, QueuePolicy>,
    grants: Vec<Grant>,
    acknowledgements: BTreeMap<LogicalId, Vec<Acknowledgement>>,
    warnings: Vec<Warning>,
}

/// Something valid that a reader of the stack should know will happen: `synth` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub construct: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.construct, self.message)
    }
}

/// A policy-scanner finding accepted for one resource, with the reason a reviewer reads (in the
/// spirit of cdk-nag's suppressions). Rendered as checkov's `Metadata.checkov.skip`, so the scan
/// stays clean and the reason travels with the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub check: String,
    pub reason: String,
}

impl Acknowledgement {
    /// A reason shorter than this says nothing a reviewer can weigh.
    pub const MIN_REASON_CHARS: usize = 20;
    pub const MAX_REASON_CHARS: usize = 500;
}

impl Stack {
    /// A stack named `name` (1 to 128 characters: a letter, then letters, digits and hyphens).
    pub fn new(name: &str, description: &str) -> Result<Self> {
        let construct = format!("Stack `{name}`");
        validate::name(&construct, "StackName", name, 1..=128, validate::alnum_or("-"), "A-Z, a-z, 0-9 and -")?;
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(Error::invalid(construct, "StackName", format!("{name:?}"), "must start with a letter"));
        }
        if description.len() > 1024 {
            return Err(Error::invalid(
                construct,
                "Description",
                format!("{} bytes", description.len()),
                "must be at most 1024 bytes",
            ));
        }
        Ok(Stack {
            serial: NEXT_STACK.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            template: Template::new(description),
            places: BTreeMap::new(),
            roles: BTreeMap::new(),
            queue_policies: BTreeMap::new(),
            grants: Vec::new(),
            acknowledgements: BTreeMap::new(),
            warnings: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records a warning about `construct`.
    pub fn warn(&mut self, construct: &ConstructRef, message: impl Into<String>) {
        self.warnings.push(Warning { construct: construct.to_string(), message: message.into() });
    }

    /// The warnings recorded while building, in order.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Reserves `id` for a construct of `kind` declared at `location`.
    pub(crate) fn claim(&mut self, id: &str, kind: Kind, location: &'static Location<'static>) -> Result<ConstructRef> {
        let id = LogicalId::new(id)?;
        let place = Place { kind, location };
        if let Some(first) = self.places.get(&id) {
            return Err(Error::DuplicateLogicalId { id: id.to_string(), first: *first, second: place });
        }
        self.places.insert(id.clone(), place);
        Ok(ConstructRef { stack: self.serial, id, kind })
    }

    /// Fails unless `construct` was built in this stack.
    pub(crate) fn owns(&self, construct: &ConstructRef) -> Result<()> {
        if construct.stack == self.serial {
            Ok(())
        } else {
            Err(Error::ForeignConstruct { construct: construct.to_string(), stack: self.name.clone() })
        }
    }

    pub(crate) fn add_resource(&mut self, construct: &ConstructRef, resource: Resource) {
        self.template.resources.insert(construct.id.clone(), resource);
    }

    pub(crate) fn add_role(&mut self, role: Role) {
        self.roles.insert(role.construct().id.clone(), role);
    }

    /// The one way a role is given permissions: `actions` on `arn` (the resource `resource` of
    /// this stack, or one outside it), added to the role's inline policy. Granting the same
    /// twice is harmless. The grant is recorded.
    #[track_caller]
    pub(crate) fn grant(
        &mut self,
        role: &ConstructRef,
        resource: Option<&ConstructRef>,
        arn: Expr,
        actions: &'static [&'static str],
    ) -> Result<Grant> {
        self.grant_when(role, resource, arn, actions, Vec::new())
    }

    /// [`Stack::grant`], narrowed by `conditions` (all must hold).
    #[track_caller]
    pub(crate) fn grant_when(
        &mut self,
        role: &ConstructRef,
        resource: Option<&ConstructRef>,
        arn: Expr,
        actions: &'static [&'static str],
        mut conditions: Vec<Condition>,
    ) -> Result<Grant> {
        if let Some(r) = resource {
            self.owns(r)?;
        }
        conditions.sort();
        let statement = conditions.iter().cloned().fold(Statement::allow(actions, vec![arn])?, Statement::when);
        self.role_mut(role)?.add(statement);
        let grant = Grant {
            principal: Principal::Role(role.clone()),
            resource: resource.cloned(),
            actions,
            conditions,
            policy: role.clone(),
        };
        Ok(self.record(grant))
    }

    /// The one way a service is given permissions: `actions` on `holder` (at `arn`) for
    /// `service` acting for the resource `source` of this stack, as a statement of `holder`'s
    /// resource policy limited to that source (`aws:SourceArn`). Recorded like a role's grant.
    #[track_caller]
    pub(crate) fn grant_service(
        &mut self,
        service: &'static str,
        (source, source_arn): (&ConstructRef, Expr),
        holder: &impl TakesResourcePolicy,
        arn: Expr,
        actions: &'static [&'static str],
    ) -> Result<Grant> {
        let holder = holder.policy_holder();
        self.owns(holder)?;
        self.owns(source)?;
        let statement = Statement::allow(actions, vec![arn])?.for_service(service).from_source(source_arn.clone());
        let policy = self.queue_policy_mut(holder)?;
        policy.add(statement);
        let policy = policy.construct().clone();
        let principal = Principal::Service { service, source: source.clone(), source_arn };
        let grant = Grant { principal, resource: Some(holder.clone()), actions, conditions: Vec::new(), policy };
        Ok(self.record(grant))
    }

    fn record(&mut self, grant: Grant) -> Grant {
        if !self.grants.contains(&grant) {
            self.grants.push(grant.clone());
        }
        grant
    }

    /// Every grant made so far, in order.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    fn role_mut(&mut self, role: &ConstructRef) -> Result<&mut Role> {
        self.owns(role)?;
        let name = self.name.clone();
        self.roles.get_mut(&role.id).ok_or_else(|| Error::ForeignConstruct { construct: role.to_string(), stack: name })
    }

    /// The resource policy of `queue`, created on first use as `<queue id>Policy`.
    #[track_caller]
    fn queue_policy_mut(&mut self, queue: &ConstructRef) -> Result<&mut QueuePolicy> {
        self.owns(queue)?;
        if !self.queue_policies.contains_key(&queue.id) {
            let kind = Kind::of::<super::iam::QueuePolicyProperties>();
            let construct = self.claim(&format!("{}Policy", queue.id), kind, Location::caller())?;
            self.queue_policies.insert(queue.id.clone(), QueuePolicy::new(construct, queue.clone()));
        }
        let name = self.name.clone();
        self.queue_policies
            .get_mut(&queue.id)
            .ok_or_else(|| Error::ForeignConstruct { construct: queue.to_string(), stack: name })
    }

    /// Accepts the policy scan's finding `check` (`CKV_AWS_<n>` or `CKV2_AWS_<n>`) on the
    /// resource `construct`, for `reason` (20 to 500 characters): the scan then skips that check
    /// there, and the reason is in the template for review.
    pub fn acknowledge(&mut self, construct: &ConstructRef, check: &str, reason: &str) -> Result<()> {
        self.owns(construct)?;
        if !matches!(construct.kind, Kind::Resource(_)) {
            return Err(Error::invalid(construct, "Metadata.checkov", check, "only resources are scanned"));
        }
        let number = check.strip_prefix("CKV_AWS_").or_else(|| check.strip_prefix("CKV2_AWS_"));
        if !number.is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::invalid(
                construct,
                "Metadata.checkov.skip.id",
                format!("{check:?}"),
                "must be a checkov AWS check ID: CKV_AWS_<n> or CKV2_AWS_<n>",
            ));
        }
        let reason = reason.trim();
        let chars = reason.chars().count();
        if !(Acknowledgement::MIN_REASON_CHARS..=Acknowledgement::MAX_REASON_CHARS).contains(&chars) {
            return Err(Error::invalid(
                construct,
                "Metadata.checkov.skip.comment",
                format!("{chars} characters"),
                "say why the finding is accepted, in 20 to 500 characters",
            ));
        }
        let list = self.acknowledgements.entry(construct.id.clone()).or_default();
        if list.iter().any(|a| a.check == check) {
            return Err(Error::invalid(construct, "Metadata.checkov.skip.id", check, "is acknowledged twice"));
        }
        list.push(Acknowledgement { check: check.to_owned(), reason: reason.to_owned() });
        list.sort_by(|a, b| a.check.cmp(&b.check));
        Ok(())
    }

    /// The accepted findings of each resource.
    pub fn acknowledgements(&self) -> &BTreeMap<LogicalId, Vec<Acknowledgement>> {
        &self.acknowledgements
    }

    /// Adds a template parameter; returns its ID for `Ref`.
    #[track_caller]
    pub fn add_parameter(&mut self, id: &str, parameter: Parameter) -> Result<LogicalId> {
        let construct = self.claim(id, Kind::Parameter, Location::caller())?;
        self.template.parameters.insert(construct.id.clone(), parameter);
        Ok(construct.id)
    }

    /// The parameter `id`, if the stack has one.
    pub fn parameter(&self, id: &str) -> Option<LogicalId> {
        self.template.parameters.keys().find(|p| p.as_str() == id).cloned()
    }

    /// Adds a named condition.
    #[track_caller]
    pub fn add_condition(&mut self, id: &str, condition: ConditionExpr) -> Result<LogicalId> {
        let construct = self.claim(id, Kind::Condition, Location::caller())?;
        self.template.conditions.insert(construct.id.clone(), condition);
        Ok(construct.id)
    }

    /// Adds a stack output.
    #[track_caller]
    pub fn add_output(&mut self, id: &str, description: &str, value: Expr) -> Result<()> {
        let construct = self.claim(id, Kind::Output, Location::caller())?;
        let output = Output { description: description.to_owned(), value, condition: None, export: None };
        self.template.outputs.insert(construct.id, output);
        Ok(())
    }

    /// The whole template: resources so far plus the roles and queue policies grants built up.
    pub fn to_template(&self) -> Result<Template> {
        let mut template = self.template.clone();
        for role in self.roles.values() {
            template.resources.insert(role.construct().id.clone(), role.render()?);
        }
        for policy in self.queue_policies.values() {
            template.resources.insert(policy.construct().id.clone(), policy.render()?);
        }
        for (id, acknowledgements) in &self.acknowledgements {
            let resource = template.resources.get_mut(id).ok_or_else(|| {
                Error::invalid(format!("`{id}`"), "Metadata.checkov", "acknowledgement", "no resource has this ID")
            })?;
            let skip: Vec<serde_json::Value> =
                acknowledgements.iter().map(|a| serde_json::json!({ "id": a.check, "comment": a.reason })).collect();
            let metadata = resource.metadata.get_or_insert_with(|| serde_json::json!({}));
            metadata["checkov"] = serde_json::json!({ "skip": skip });
        }
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_follow_cloudformation_rules() {
        assert!(Stack::new("a", "").is_ok());
        assert!(Stack::new(&format!("a{}", "-".repeat(127)), "").is_ok());
        for bad in ["", "1abc", "-abc", "a_b", &"a".repeat(129)] {
            assert!(Stack::new(bad, "").is_err(), "{bad:?}");
        }
        assert!(Stack::new("a", &"d".repeat(1024)).is_ok());
        let err = Stack::new("a", &"d".repeat(1025)).unwrap_err().to_string();
        assert!(err.contains("Description = 1025 bytes"), "{err}");
    }

    #[test]
    fn a_duplicate_logical_id_names_both_places() {
        let mut stack = Stack::new("s", "").unwrap();
        stack.claim("Thing", Kind::Resource("AWS::SQS::Queue"), Location::caller()).unwrap();
        let err =
            stack.claim("Thing", Kind::Resource("AWS::DynamoDB::Table"), Location::caller()).unwrap_err().to_string();
        assert!(err.starts_with("logical ID `Thing` is used twice: first by sqs::Queue at "), "{err}");
        assert!(err.contains("then by dynamodb::Table at "), "{err}");
        assert!(err.contains("stack.rs:"), "{err}");
    }

    #[test]
    fn parameters_and_outputs_share_the_namespace() {
        let mut stack = Stack::new("s", "").unwrap();
        stack.add_parameter("Bucket", Parameter::string("b")).unwrap();
        assert_eq!(stack.parameter("Bucket").unwrap().as_str(), "Bucket");
        assert!(stack.parameter("Other").is_none());
        assert!(stack.add_output("Bucket", "o", Expr::lit("x")).is_err());
        stack.add_condition("IsProd", ConditionExpr::Condition("X".into())).unwrap();
        let template = stack.to_template().unwrap();
        assert_eq!(template.parameters.len(), 1);
        assert_eq!(template.conditions.len(), 1);
    }

    #[test]
    fn grants_are_recorded_once_and_drawn_from_the_record() {
        use crate::constructs::dynamodb::{Key, Table};
        use crate::constructs::iam::actions;
        use crate::constructs::lambda::{Code, Function};
        let mut stack = Stack::new("s", "").unwrap();
        let table = Table::builder("T", Key::string("PK")).build(&mut stack).unwrap();
        let f = Function::builder("F", Code::asset("f")).build(&mut stack).unwrap();
        let g = table.grant_write(&mut stack, &f).unwrap();
        assert_eq!(table.grant_write(&mut stack, &f).unwrap(), g, "granting twice is harmless");
        assert_eq!(g.principal, Principal::Role(f.role().clone()));
        assert_eq!(
            (g.resource.as_ref(), g.actions, &g.policy),
            (Some(table.construct()), actions::DYNAMODB_WRITE, f.role())
        );
        // The function's own log grant, then the table's.
        assert_eq!(stack.grants().len(), 2);
        let template = stack.to_template().unwrap();
        let statements = &template.resource("FRole").unwrap().properties["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(statements.as_array().unwrap().len(), 2);
        let dot = crate::diagram::dot(&stack).unwrap();
        assert!(dot.contains("\"FRole\" -> \"T\" [label=\"dynamodb:PutItem\\ndynamodb:UpdateItem\"];"), "{dot}");
        // (A service grant takes a `TakesResourcePolicy` holder: on the table it does not compile.)
    }

    #[test]
    fn kinds_are_named_by_their_service_and_resource() {
        assert_eq!(Kind::Resource("AWS::SQS::Queue").to_string(), "sqs::Queue");
        assert_eq!(
            Kind::of::<crate::constructs::lambda::MappingProperties>().to_string(),
            "lambda::EventSourceMapping"
        );
        assert_eq!(Kind::Resource("AWS::CloudWatch::Alarm").to_string(), "cloudwatch::Alarm");
        assert_eq!(Kind::Resource("Custom::Thing").to_string(), "Custom::Thing");
        assert_eq!(Kind::Output.to_string(), "Output");
    }

    #[test]
    fn acknowledgements_become_checkov_metadata_with_their_reasons() {
        use crate::constructs::lambda::{Code, Function};
        let mut stack = Stack::new("s", "").unwrap();
        let f = Function::builder("F", Code::asset("f")).build(&mut stack).unwrap();
        let why = "calls only public AWS endpoints";
        stack.acknowledge(f.construct(), "CKV_AWS_117", why).unwrap();
        stack.acknowledge(f.construct(), "CKV2_AWS_1", why).unwrap();
        let t = stack.to_template().unwrap();
        let metadata = t.resource("F").unwrap().metadata.clone().unwrap();
        assert_eq!(
            metadata["checkov"],
            serde_json::json!({"skip": [
                {"id": "CKV2_AWS_1", "comment": why},
                {"id": "CKV_AWS_117", "comment": why},
            ]})
        );
        assert!(metadata.get("Asset").is_some(), "the function's own metadata stays: {metadata}");
        let role = f.role().clone();
        stack.acknowledge(&role, "CKV_AWS_111", why).unwrap();
        assert!(stack.to_template().unwrap().resource("FRole").unwrap().metadata.is_some());
    }

    #[test]
    fn acknowledgements_are_checked() {
        use crate::constructs::lambda::{Code, Function};
        let mut stack = Stack::new("s", "").unwrap();
        let f = Function::builder("F", Code::asset("f")).build(&mut stack).unwrap();
        let c = f.construct().clone();
        let twenty = "a".repeat(20);
        assert!(stack.acknowledge(&c, "CKV_AWS_1", &twenty).is_ok());
        assert!(stack.acknowledge(&c, "CKV_AWS_2", &"é".repeat(500)).is_ok());
        let cases = [
            ("CKV_AWS_3", "a".repeat(19), "in 20 to 500 characters"),
            ("CKV_AWS_3", format!("  {}  ", "a".repeat(19)), "in 20 to 500 characters"),
            ("CKV_AWS_3", "a".repeat(501), "in 20 to 500 characters"),
            ("CKV_AWS_1", twenty.clone(), "is acknowledged twice"),
            ("CKV_AWS_", twenty.clone(), "CKV_AWS_<n>"),
            ("CKV_AZURE_1", twenty.clone(), "CKV_AWS_<n>"),
            ("CKV_AWS_1x", twenty.clone(), "CKV_AWS_<n>"),
            ("ckv_aws_1", twenty.clone(), "CKV_AWS_<n>"),
        ];
        for (check, reason, expected) in cases {
            let err = stack.acknowledge(&c, check, &reason).unwrap_err().to_string();
            assert!(err.starts_with("lambda::Function `F`: Metadata.checkov"), "{err}");
            assert!(err.contains(expected), "{check} {reason:?}: {err}");
        }
        let output = stack.claim("Out", Kind::Output, Location::caller()).unwrap();
        assert!(stack.acknowledge(&output, "CKV_AWS_1", &twenty).unwrap_err().to_string().contains("only resources"));
        let other = Stack::new("o", "").unwrap();
        assert!(matches!(other.owns(&c), Err(Error::ForeignConstruct { .. })));
        let mut other = other;
        assert!(other.acknowledge(&c, "CKV_AWS_1", &twenty).is_err());
    }

    #[test]
    fn handles_from_another_stack_are_refused() {
        let mut a = Stack::new("a", "").unwrap();
        let b = Stack::new("b", "").unwrap();
        let thing = a.claim("Thing", Kind::Resource("AWS::SQS::Queue"), Location::caller()).unwrap();
        assert!(a.owns(&thing).is_ok());
        let err = b.owns(&thing).unwrap_err().to_string();
        assert_eq!(err, "sqs::Queue `Thing` belongs to another stack; pass a handle built in stack `b`");
    }
}
