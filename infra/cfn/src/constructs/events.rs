//! EventBridge: `EventBus` (created or imported by name), `Rule` with a typed `EventPattern`,
//! and SQS targets with their dead-letter queue and retry policy.

use std::collections::BTreeMap;
use std::panic::Location;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::iam::{actions, Condition, Grant, Grantee};
use super::sqs::Queue;
use super::{validate, ConstructRef, Kind, Stack};
use crate::error::{Error, Result};
use crate::template::{Expr, Resource, ResourceProperties};

/// The properties of `AWS::Events::EventBus`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventBusProperties<'a> {
    name: &'a str,
}

impl ResourceProperties for EventBusProperties<'_> {
    const TYPE: &'static str = "AWS::Events::EventBus";
}

/// An event bus: one this stack creates, or one that exists already (the core app's).
#[derive(Clone, Debug, PartialEq)]
pub enum EventBus {
    Created { construct: ConstructRef, name: String },
    Imported { name: String },
}

fn check_bus_name(construct: &impl std::fmt::Display, name: &str) -> Result<()> {
    validate::name(construct, "Name", name, 1..=256, validate::alnum_or("/.-_"), "A-Z, a-z, 0-9, /, ., - and _")
}

impl EventBus {
    /// The bus's physical name.
    pub fn name(&self) -> &str {
        match self {
            EventBus::Created { name, .. } | EventBus::Imported { name } => name,
        }
    }

    /// The construct of a bus this stack creates; `None` for an imported one.
    pub fn construct(&self) -> Option<&ConstructRef> {
        match self {
            EventBus::Created { construct, .. } => Some(construct),
            EventBus::Imported { .. } => None,
        }
    }

    /// A bus that exists outside this stack, by name.
    pub fn import(name: &str) -> Result<Self> {
        check_bus_name(&format!("events::EventBus (imported) `{name}`"), name)?;
        Ok(EventBus::Imported { name: name.to_owned() })
    }

    /// A bus this stack creates, named `name`.
    #[track_caller]
    pub fn create(stack: &mut Stack, id: &str, name: &str) -> Result<Self> {
        let construct = stack.claim(id, Kind::of::<EventBusProperties>(), Location::caller())?;
        check_bus_name(&construct, name)?;
        if name == "default" || name.starts_with("aws.") {
            return Err(Error::invalid(&construct, "Name", format!("{name:?}"), "`default` and `aws.*` are reserved"));
        }
        stack.add_resource(&construct, Resource::of(&EventBusProperties { name })?);
        Ok(EventBus::Created { construct, name: name.to_owned() })
    }

    /// The bus name as a rule's `EventBusName` takes it. For a created bus, `Fn::GetAtt Name`
    /// rather than `Ref`: equivalent on AWS, and the form moto's CloudFormation accepts.
    pub fn bus_name(&self) -> Expr {
        match self {
            EventBus::Created { construct, .. } => construct.id.get_att("Name"),
            EventBus::Imported { name } => Expr::lit(name.as_str()),
        }
    }

    pub fn arn(&self) -> Expr {
        match self {
            EventBus::Created { construct, .. } => construct.id.get_att("Arn"),
            EventBus::Imported { name } => Expr::Sub(format!(
                "arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:event-bus/{name}"
            )),
        }
    }

    /// Lets `grantee` put events on this bus, and nothing else.
    pub fn grant_put_events(&self, stack: &mut Stack, grantee: &impl Grantee) -> Result<Grant> {
        let resource = match self {
            EventBus::Created { construct, .. } => Some(construct),
            EventBus::Imported { .. } => None,
        };
        stack.grant(grantee.grant_role(), resource, self.arn(), actions::EVENTS_PUT)
    }

    /// [`EventBus::grant_put_events`], only for events of `source` with one of `detail_types`
    /// (`events:source`, `events:detail-type`; EventBridge checks each entry): the grantee
    /// cannot pose as another producer on the bus.
    pub fn grant_put_events_of(
        &self,
        stack: &mut Stack,
        grantee: &impl Grantee,
        source: &str,
        detail_types: &[&str],
    ) -> Result<Grant> {
        let resource = match self {
            EventBus::Created { construct, .. } => Some(construct),
            EventBus::Imported { .. } => None,
        };
        let conditions = vec![
            Condition::string_equals("events:source", &[source])?,
            Condition::string_equals("events:detail-type", detail_types)?,
        ];
        stack.grant_when(grantee.grant_role(), resource, self.arn(), actions::EVENTS_PUT, conditions)
    }
}

/// How one field of an event must look (EventBridge's content filters).
#[derive(Clone, Debug, PartialEq)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    AnythingBut(Vec<String>),
    AnythingButPrefix(String),
    Exists(bool),
}

impl Matcher {
    pub fn exact(value: &str) -> Self {
        Matcher::Exact(value.to_owned())
    }

    fn to_json(&self) -> Value {
        match self {
            Matcher::Exact(v) => json!(v),
            Matcher::Prefix(p) => json!({ "prefix": p }),
            Matcher::AnythingBut(vs) => json!({ "anything-but": vs }),
            Matcher::AnythingButPrefix(p) => json!({ "anything-but": { "prefix": p } }),
            Matcher::Exists(e) => json!({ "exists": e }),
        }
    }

    fn check(&self) -> Option<&'static str> {
        match self {
            Matcher::Prefix(p) | Matcher::AnythingButPrefix(p) if p.is_empty() => Some("a prefix must not be empty"),
            Matcher::AnythingBut(vs) if vs.is_empty() => Some("anything-but needs at least one value"),
            _ => None,
        }
    }
}

/// An event pattern: source, detail-type and fields of the detail (dotted paths for nesting).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPattern {
    source: Vec<Matcher>,
    detail_type: Vec<Matcher>,
    detail: BTreeMap<String, Vec<Matcher>>,
}

impl EventPattern {
    /// EventBridge's limit on a pattern's length.
    pub const MAX_LEN: usize = 4096;

    pub fn new() -> Self {
        Self::default()
    }

    /// Events from any of these sources.
    pub fn sources(mut self, sources: &[&str]) -> Self {
        self.source.extend(sources.iter().map(|s| Matcher::exact(s)));
        self
    }

    /// Events of any of these detail-types.
    pub fn detail_types(mut self, types: &[&str]) -> Self {
        self.detail_type.extend(types.iter().map(|s| Matcher::exact(s)));
        self
    }

    pub fn detail_type(mut self, matcher: Matcher) -> Self {
        self.detail_type.push(matcher);
        self
    }

    /// A field of the detail, such as `drinkOrder.drink`, matching any of `matchers`.
    pub fn detail_field(mut self, path: &str, matchers: Vec<Matcher>) -> Self {
        self.detail.insert(path.to_owned(), matchers);
        self
    }

    /// The pattern as EventBridge reads it, or why it is invalid.
    pub fn to_json(&self) -> std::result::Result<Value, PatternError> {
        let mut root = Map::new();
        for (key, matchers) in [("source", &self.source), ("detail-type", &self.detail_type)] {
            if !matchers.is_empty() {
                root.insert(key.to_owned(), matchers_json(key, matchers)?);
            }
        }
        if !self.detail.is_empty() {
            let mut detail = Map::new();
            for (path, matchers) in &self.detail {
                insert_path(&mut detail, path, matchers_json(path, matchers)?)?;
            }
            root.insert("detail".to_owned(), Value::Object(detail));
        }
        if root.is_empty() {
            return Err(PatternError::NoField);
        }
        Ok(Value::Object(root))
    }
}

/// Why an event pattern is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern has no field; match at least a source or a detail-type")]
    NoField,
    #[error("field `{0}` has no value to match")]
    NoValue(String),
    #[error("field `{field}`: {reason}")]
    BadMatcher { field: String, reason: &'static str },
    #[error("detail field `{0}` has an empty path segment")]
    EmptySegment(String),
    #[error("detail field `{path}` nests under `{part}`, which is matched as a value")]
    NestsUnderValue { path: String, part: String },
    #[error("detail field `{0}` is both matched and nested into")]
    MatchedAndNested(String),
}

fn matchers_json(field: &str, matchers: &[Matcher]) -> std::result::Result<Value, PatternError> {
    if matchers.is_empty() {
        return Err(PatternError::NoValue(field.to_owned()));
    }
    if let Some(reason) = matchers.iter().find_map(Matcher::check) {
        return Err(PatternError::BadMatcher { field: field.to_owned(), reason });
    }
    Ok(Value::Array(matchers.iter().map(Matcher::to_json).collect()))
}

fn insert_path(into: &mut Map<String, Value>, path: &str, value: Value) -> std::result::Result<(), PatternError> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(PatternError::EmptySegment(path.to_owned()));
    }
    let (last, parents) = parts.split_last().ok_or_else(|| PatternError::EmptySegment(path.to_owned()))?;
    let mut node = into;
    for part in parents {
        let entry = node.entry((*part).to_owned()).or_insert_with(|| Value::Object(Map::new()));
        node = entry
            .as_object_mut()
            .ok_or_else(|| PatternError::NestsUnderValue { path: path.to_owned(), part: (*part).to_owned() })?;
    }
    if node.contains_key(*last) {
        return Err(PatternError::MatchedAndNested(path.to_owned()));
    }
    node.insert((*last).to_owned(), value);
    Ok(())
}

/// Delivery of a rule's events to an SQS queue.
#[derive(Clone, Debug)]
pub struct SqsTarget {
    id: String,
    queue: Queue,
    dead_letter_queue: Option<Queue>,
    max_retry_attempts: u32,
    max_event_age_secs: u32,
}

impl SqsTarget {
    pub const MAX_RETRY_ATTEMPTS: std::ops::RangeInclusive<u32> = 0..=185;
    pub const MAX_EVENT_AGE_SECS: std::ops::RangeInclusive<u32> = 60..=86_400;

    /// Target `id` delivering to `queue`, retrying as EventBridge does by default (185 times
    /// over 24 hours).
    pub fn new(id: &str, queue: &Queue) -> Self {
        SqsTarget {
            id: id.to_owned(),
            queue: queue.clone(),
            dead_letter_queue: None,
            max_retry_attempts: 185,
            max_event_age_secs: 86_400,
        }
    }

    /// Where events go that cannot be delivered after the retries.
    pub fn dead_letter_queue(mut self, queue: &Queue) -> Self {
        self.dead_letter_queue = Some(queue.clone());
        self
    }

    pub fn retry_policy(mut self, max_attempts: u32, max_event_age_secs: u32) -> Self {
        self.max_retry_attempts = max_attempts;
        self.max_event_age_secs = max_event_age_secs;
        self
    }

    /// How long EventBridge retries delivering an event (`MaximumEventAgeInSeconds`).
    pub fn max_event_age_secs(&self) -> u32 {
        self.max_event_age_secs
    }
}

/// Builder of an `AWS::Events::Rule` on a bus, with 1 to 5 SQS targets.
#[derive(Clone, Debug)]
pub struct RuleBuilder {
    id: String,
    bus: EventBus,
    pattern: EventPattern,
    name: Option<String>,
    description: Option<String>,
    enabled: bool,
    targets: Vec<SqsTarget>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    construct: ConstructRef,
    name: Option<String>,
    bus: EventBus,
    pattern: EventPattern,
}

impl Rule {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <RuleProperties<'static> as ResourceProperties>::TYPE;

    pub fn builder(id: &str, bus: &EventBus, pattern: EventPattern) -> RuleBuilder {
        RuleBuilder {
            id: id.to_owned(),
            bus: bus.clone(),
            pattern,
            name: None,
            description: None,
            enabled: true,
            targets: Vec::new(),
        }
    }

    pub fn arn(&self) -> Expr {
        self.construct.id.get_att("Arn")
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// The physical name, when one was given.
    pub fn physical_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn pattern(&self) -> &EventPattern {
        &self.pattern
    }
}

/// The properties of `AWS::Events::Rule`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    event_bus_name: Expr,
    event_pattern: Value,
    state: &'static str,
    targets: Vec<Value>,
}

impl ResourceProperties for RuleProperties<'_> {
    const TYPE: &'static str = "AWS::Events::Rule";
}

impl RuleBuilder {
    /// Physical name: 1 to 64 of A-Z, a-z, 0-9, `.`, - and _.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    pub fn target(mut self, target: SqsTarget) -> Self {
        self.targets.push(target);
        self
    }

    fn target_json(construct: &ConstructRef, t: &SqsTarget) -> Result<Value> {
        let property = "Targets.Id";
        validate::name(construct, property, &t.id, 1..=64, validate::alnum_or(".-_"), "A-Z, a-z, 0-9, ., - and _")?;
        validate::in_range(
            construct,
            "Targets.RetryPolicy.MaximumRetryAttempts",
            t.max_retry_attempts,
            SqsTarget::MAX_RETRY_ATTEMPTS,
        )?;
        validate::in_range(
            construct,
            "Targets.RetryPolicy.MaximumEventAgeInSeconds",
            t.max_event_age_secs,
            SqsTarget::MAX_EVENT_AGE_SECS,
        )?;
        let mut target = json!({
            "Id": t.id,
            "Arn": t.queue.arn(),
            "RetryPolicy": {
                "MaximumRetryAttempts": t.max_retry_attempts,
                "MaximumEventAgeInSeconds": t.max_event_age_secs,
            },
        });
        if let Some(dlq) = &t.dead_letter_queue {
            target["DeadLetterConfig"] = json!({ "Arn": dlq.arn() });
        }
        Ok(target)
    }

    /// Builds the rule and lets it send to each target queue and dead-letter queue.
    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Rule> {
        let location = Location::caller();
        let construct = stack.claim(&self.id, Kind::of::<RuleProperties>(), location)?;
        if let Some(name) = &self.name {
            validate::name(&construct, "Name", name, 1..=64, validate::alnum_or(".-_"), "A-Z, a-z, 0-9, ., - and _")?;
        }
        if let Some(d) = &self.description {
            validate::max_chars(&construct, "Description", d, 512)?;
        }
        if let EventBus::Created { construct: bus, .. } = &self.bus {
            stack.owns(bus)?;
        }
        let pattern = self
            .pattern
            .to_json()
            .map_err(|source| Error::InvalidPattern { construct: construct.to_string(), source })?;
        let len = pattern.to_string().len();
        if len > EventPattern::MAX_LEN {
            return Err(Error::invalid(
                &construct,
                "EventPattern",
                format!("{len} characters"),
                "must be at most 4096 characters",
            ));
        }
        if self.targets.is_empty() || self.targets.len() > 5 {
            return Err(Error::invalid(
                &construct,
                "Targets",
                format!("{} targets", self.targets.len()),
                "a rule has 1 to 5 targets",
            ));
        }
        let mut targets = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].iter().any(|other| other.id == t.id) {
                return Err(Error::invalid(
                    &construct,
                    "Targets.Id",
                    &t.id,
                    "target IDs must be unique within the rule",
                ));
            }
            stack.owns(t.queue.construct())?;
            targets.push(Self::target_json(&construct, t)?);
        }
        let props = RuleProperties {
            name: self.name.as_deref(),
            description: self.description.as_deref(),
            event_bus_name: self.bus.bus_name(),
            event_pattern: pattern,
            state: if self.enabled { "ENABLED" } else { "DISABLED" },
            targets,
        };
        stack.add_resource(&construct, Resource::of(&props)?);
        let rule = Rule { construct, name: self.name, bus: self.bus, pattern: self.pattern };
        for t in &self.targets {
            t.queue.grant_send_from(stack, &rule)?;
            if let Some(dlq) = &t.dead_letter_queue {
                dlq.grant_send_from(stack, &rule)?;
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{LogicalId, Template};

    fn get(t: &Template, id: &str) -> Value {
        t.resources[&LogicalId::new(id).unwrap()].properties.clone()
    }

    fn pattern() -> EventPattern {
        EventPattern::new().sources(&["awsserverlessda.serverlesspresso"])
    }

    #[test]
    fn patterns_render_every_matcher() {
        let p = pattern()
            .detail_types(&["OrderManager.WaitingCompletion"])
            .detail_type(Matcher::Prefix("OrderManager.".into()))
            .detail_field("drinkOrder.drink", vec![Matcher::exact("Latte"), Matcher::AnythingBut(vec!["Tea".into()])])
            .detail_field("drinkOrder.size", vec![Matcher::AnythingButPrefix("X".into())])
            .detail_field("orderId", vec![Matcher::Exists(true)]);
        assert_eq!(
            p.to_json().unwrap(),
            json!({
                "source": ["awsserverlessda.serverlesspresso"],
                "detail-type": ["OrderManager.WaitingCompletion", {"prefix": "OrderManager."}],
                "detail": {
                    "drinkOrder": {
                        "drink": ["Latte", {"anything-but": ["Tea"]}],
                        "size": [{"anything-but": {"prefix": "X"}}],
                    },
                    "orderId": [{"exists": true}],
                },
            })
        );
    }

    #[test]
    fn invalid_patterns_say_why() {
        let cases = [
            (EventPattern::new(), "no field"),
            (pattern().detail_field("a", vec![]), "no value"),
            (pattern().detail_field("a..b", vec![Matcher::Exists(true)]), "empty path segment"),
            (pattern().detail_field("a", vec![Matcher::Prefix(String::new())]), "prefix must not be empty"),
            (pattern().detail_field("a", vec![Matcher::AnythingBut(vec![])]), "anything-but needs"),
            (
                pattern()
                    .detail_field("a", vec![Matcher::Exists(true)])
                    .detail_field("a.b", vec![Matcher::Exists(true)]),
                "matched as a value",
            ),
        ];
        for (p, want) in cases {
            let err = p.to_json().unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    struct Setup {
        stack: Stack,
        bus: EventBus,
        queue: Queue,
        dlq: Queue,
    }

    fn setup() -> Setup {
        let mut stack = Stack::new("s", "").unwrap();
        let bus = EventBus::create(&mut stack, "Bus", "Serverlesspresso").unwrap();
        let dlq = Queue::builder("Dlq").retention_secs(1_209_600).build(&mut stack).unwrap();
        let queue = Queue::builder("Q").build(&mut stack).unwrap();
        Setup { stack, bus, queue, dlq }
    }

    #[test]
    fn rule_targets_the_queue_and_grants_it() {
        let mut s = setup();
        Rule::builder("R", &s.bus, pattern())
            .name("OrderMetrics-DynamoDB")
            .target(SqsTarget::new("MetricsQueue", &s.queue).dead_letter_queue(&s.dlq).retry_policy(10, 3600))
            .build(&mut s.stack)
            .unwrap();
        let t = s.stack.to_template().unwrap();
        let rule = get(&t, "R");
        assert_eq!(rule["EventBusName"], json!({"Fn::GetAtt": ["Bus", "Name"]}));
        assert_eq!(rule["State"], "ENABLED");
        assert_eq!(
            rule["Targets"],
            json!([{
                "Id": "MetricsQueue",
                "Arn": {"Fn::GetAtt": ["Q", "Arn"]},
                "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["Dlq", "Arn"]}},
                "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600},
            }])
        );
        for (policy, queue) in [("QPolicy", "Q"), ("DlqPolicy", "Dlq")] {
            assert_eq!(
                get(&t, policy),
                json!({
                    "Queues": [{"Ref": queue}],
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": ["sqs:SendMessage"],
                        "Resource": [{"Fn::GetAtt": [queue, "Arn"]}],
                        "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["R", "Arn"]}}},
                    }]},
                })
            );
        }
    }

    #[test]
    fn rule_limits() {
        let build = |f: &dyn Fn(RuleBuilder, &Queue) -> RuleBuilder| {
            let mut s = setup();
            let b = Rule::builder("R", &s.bus, pattern());
            f(b, &s.queue).build(&mut s.stack)
        };
        assert!(build(&|b, q| b.target(SqsTarget::new("t", q))).is_ok());
        assert!(build(&|b, _| b).unwrap_err().to_string().contains("1 to 5 targets"));
        let six = |b: RuleBuilder, q: &Queue| (0..6).fold(b, |b, i| b.target(SqsTarget::new(&format!("t{i}"), q)));
        assert!(build(&six).is_err());
        let five = |b: RuleBuilder, q: &Queue| (0..5).fold(b, |b, i| b.target(SqsTarget::new(&format!("t{i}"), q)));
        assert!(build(&five).is_ok());
        assert!(build(&|b, q| b.target(SqsTarget::new("t", q)).target(SqsTarget::new("t", q))).is_err());
        assert!(build(&|b, q| b.name("n".repeat(64)).target(SqsTarget::new("t", q))).is_ok());
        assert!(build(&|b, q| b.name("n".repeat(65)).target(SqsTarget::new("t", q))).is_err());
        assert!(build(&|b, q| b.name("a/b").target(SqsTarget::new("t", q))).is_err());
        assert!(build(&|b, q| b.target(SqsTarget::new(&"i".repeat(65), q))).is_err());
        assert!(build(&|b, q| b.description("d".repeat(512)).target(SqsTarget::new("t", q))).is_ok());
        assert!(build(&|b, q| b.description("d".repeat(513)).target(SqsTarget::new("t", q))).is_err());
        for (attempts, age, ok) in
            [(0, 60, true), (185, 86_400, true), (186, 60, false), (0, 59, false), (0, 86_401, false)]
        {
            let r = build(&|b, q| b.target(SqsTarget::new("t", q).retry_policy(attempts, age)));
            assert_eq!(r.is_ok(), ok, "{attempts} {age}");
        }
        let err = build(&|b, q| b.target(SqsTarget::new("t", q).retry_policy(186, 60))).unwrap_err().to_string();
        assert!(err.starts_with("events::Rule `R`: Targets.RetryPolicy.MaximumRetryAttempts = 186"), "{err}");
    }

    #[test]
    fn long_patterns_are_refused() {
        let mut s = setup();
        let values: Vec<&str> = vec!["x"; 1400];
        let p = pattern().detail_types(&values);
        let err = Rule::builder("R", &s.bus, p).target(SqsTarget::new("t", &s.queue)).build(&mut s.stack).unwrap_err();
        assert!(err.to_string().contains("at most 4096 characters"), "{err}");
    }

    #[test]
    fn an_invalid_pattern_names_the_rule_and_keeps_its_cause() {
        let mut s = setup();
        let p = EventPattern::new().detail_field("drinkOrder..drink", vec![Matcher::exact("Latte")]);
        let err = Rule::builder("R", &s.bus, p).target(SqsTarget::new("t", &s.queue)).build(&mut s.stack).unwrap_err();
        // The cause is the source, not repeated in the message (an error chain prints it once).
        assert_eq!(err.to_string(), "events::Rule `R`: EventPattern is invalid");
        let cause = std::error::Error::source(&err).expect("the pattern error is kept");
        assert_eq!(cause.to_string(), "detail field `drinkOrder..drink` has an empty path segment");
    }

    #[test]
    fn imported_bus_is_referenced_by_name() {
        let bus = EventBus::import("Serverlesspresso").unwrap();
        assert_eq!(bus.bus_name(), Expr::lit("Serverlesspresso"));
        assert_eq!(
            serde_json::to_value(bus.arn()).unwrap(),
            json!({"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/Serverlesspresso"})
        );
        assert!(EventBus::import("").is_err());
        assert!(EventBus::import(&"b".repeat(257)).is_err());
        assert!(EventBus::import("a b").is_err());
        let mut stack = Stack::new("s", "").unwrap();
        assert!(EventBus::create(&mut stack, "B1", "default").is_err());
        assert!(EventBus::create(&mut stack, "B2", "aws.partner").is_err());
    }
}
