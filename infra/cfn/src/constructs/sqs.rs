//! SQS: `Queue` (visibility timeout, retention, long polling, SSE, dead-letter queue) and the
//! grants that write its queue policy or a consumer's role.

use std::panic::Location;

use serde::Serialize;
use serde_json::json;

use super::cloudwatch::{Metric, Statistic};
use super::events::Rule;
use super::iam::{actions, Grant, Grantee};
use super::{validate, ConstructRef, Kind, Stack, TakesResourcePolicy};
use crate::error::{Error, Result};
use crate::template::{Expr, Resource, ResourceProperties};

/// Builder of an `AWS::SQS::Queue`. Defaults: 30 s visibility, 4 days retention, 20 s long
/// polling, SQS-managed encryption, no dead-letter queue.
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    id: String,
    name: Option<String>,
    visibility_timeout_secs: u32,
    retention_secs: u32,
    receive_wait_secs: u32,
    encrypted: bool,
    dead_letter: Option<(Queue, u32)>,
    redrive_allow: Option<Vec<String>>,
}

/// A built queue: the handle other constructs and grants take.
#[derive(Clone, Debug, PartialEq)]
pub struct Queue {
    construct: ConstructRef,
    name: Option<String>,
    visibility_timeout_secs: u32,
    retention_secs: u32,
    dead_letter: Option<(ConstructRef, u32)>,
    /// The only queues (by name) that may use this one as their dead-letter queue.
    redrive_allow: Option<Vec<String>>,
}

/// The properties of `AWS::SQS::Queue`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_name: Option<&'a str>,
    visibility_timeout: u32,
    message_retention_period: u32,
    receive_message_wait_time_seconds: u32,
    sqs_managed_sse_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    redrive_policy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redrive_allow_policy: Option<serde_json::Value>,
}

impl ResourceProperties for QueueProperties<'_> {
    const TYPE: &'static str = "AWS::SQS::Queue";
}

/// A queue's policy (`AWS::SQS::QueuePolicy`) is where services get their access.
impl TakesResourcePolicy for Queue {
    fn policy_holder(&self) -> &ConstructRef {
        &self.construct
    }
}

impl Queue {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <QueueProperties<'static> as ResourceProperties>::TYPE;

    pub const VISIBILITY_TIMEOUT: std::ops::RangeInclusive<u32> = 0..=43_200;
    pub const RETENTION: std::ops::RangeInclusive<u32> = 60..=1_209_600;
    pub const RECEIVE_WAIT: std::ops::RangeInclusive<u32> = 0..=20;
    pub const MAX_RECEIVE_COUNT: std::ops::RangeInclusive<u32> = 1..=1_000;
    /// Source queues a `RedriveAllowPolicy` of `byQueue` may name.
    pub const REDRIVE_ALLOW_SOURCES: std::ops::RangeInclusive<usize> = 1..=10;

    pub fn builder(id: &str) -> QueueBuilder {
        QueueBuilder {
            id: id.to_owned(),
            name: None,
            visibility_timeout_secs: 30,
            retention_secs: 345_600,
            receive_wait_secs: 20,
            encrypted: true,
            dead_letter: None,
            redrive_allow: None,
        }
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// The physical name, when one was given.
    pub fn physical_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn visibility_timeout_secs(&self) -> u32 {
        self.visibility_timeout_secs
    }

    pub fn retention_secs(&self) -> u32 {
        self.retention_secs
    }

    /// The dead-letter queue and `maxReceiveCount`, when there is a redrive policy.
    pub fn dead_letter(&self) -> Option<(&ConstructRef, u32)> {
        self.dead_letter.as_ref().map(|(q, n)| (q, *n))
    }

    /// The queues (by name) allowed to use this one as their dead-letter queue, when limited.
    pub fn redrive_allow(&self) -> Option<&[String]> {
        self.redrive_allow.as_deref()
    }

    /// The queue URL (`Ref`).
    pub fn url(&self) -> Expr {
        self.construct.id.reference()
    }

    pub fn arn(&self) -> Expr {
        self.construct.id.get_att("Arn")
    }

    pub fn queue_name(&self) -> Expr {
        self.construct.id.get_att("QueueName")
    }

    /// Lets `grantee` receive and delete messages, as a Lambda event source needs.
    pub fn grant_consume(&self, stack: &mut Stack, grantee: &impl Grantee) -> Result<Grant> {
        stack.grant(grantee.grant_role(), Some(&self.construct), self.arn(), actions::SQS_CONSUME)
    }

    /// Lets EventBridge deliver to this queue, only for `rule` (`aws:SourceArn`).
    #[track_caller]
    pub fn grant_send_from(&self, stack: &mut Stack, rule: &Rule) -> Result<Grant> {
        let source = (rule.construct(), rule.arn());
        stack.grant_service("events.amazonaws.com", source, self, self.arn(), actions::SQS_SEND)
    }

    fn metric(&self, name: &'static str, statistic: Statistic) -> Metric {
        Metric::new("AWS/SQS", name, ("QueueName", self.queue_name()), statistic)
    }

    /// Messages waiting to be received.
    pub fn metric_visible_messages(&self) -> Metric {
        self.metric("ApproximateNumberOfMessagesVisible", Statistic::Maximum)
    }

    /// Messages received and not yet deleted.
    pub fn metric_in_flight_messages(&self) -> Metric {
        self.metric("ApproximateNumberOfMessagesNotVisible", Statistic::Maximum)
    }

    /// Age of the oldest message, in seconds.
    pub fn metric_oldest_message_age(&self) -> Metric {
        self.metric("ApproximateAgeOfOldestMessage", Statistic::Maximum)
    }
}

impl QueueBuilder {
    /// Physical name: 1 to 80 of A-Z, a-z, 0-9, - and _.
    pub fn queue_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// 0 to 43200 s; for a Lambda event source, at least 6 x the function timeout plus the
    /// batching window (checked when the mapping is built).
    pub fn visibility_timeout_secs(mut self, secs: u32) -> Self {
        self.visibility_timeout_secs = secs;
        self
    }

    /// 60 s to 14 days.
    pub fn retention_secs(mut self, secs: u32) -> Self {
        self.retention_secs = secs;
        self
    }

    /// Long polling, 0 to 20 s.
    pub fn receive_wait_secs(mut self, secs: u32) -> Self {
        self.receive_wait_secs = secs;
        self
    }

    pub fn encrypted(mut self, on: bool) -> Self {
        self.encrypted = on;
        self
    }

    /// After `max_receive_count` receives (1 to 1000), a message moves to `queue`.
    pub fn dead_letter_queue(mut self, queue: &Queue, max_receive_count: u32) -> Self {
        self.dead_letter = Some((queue.clone(), max_receive_count));
        self
    }

    /// Only the queues named `source_queues` (1 to 10, of this stack's account and region) may
    /// use this queue as their dead-letter queue (`RedriveAllowPolicy` `byQueue`), so no other
    /// queue's failures land among this one's. By name, not `Fn::GetAtt`: the sources refer to
    /// this queue, and a reference back would be a cycle.
    pub fn redrive_allow_only(mut self, source_queues: &[&str]) -> Self {
        self.redrive_allow = Some(source_queues.iter().map(|q| (*q).to_owned()).collect());
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Queue> {
        let construct = stack.claim(&self.id, Kind::of::<QueueProperties>(), Location::caller())?;
        if let Some(name) = &self.name {
            validate::name(&construct, "QueueName", name, 1..=80, validate::alnum_or("-_"), "A-Z, a-z, 0-9, - and _")?;
        }
        validate::in_range(&construct, "VisibilityTimeout", self.visibility_timeout_secs, Queue::VISIBILITY_TIMEOUT)?;
        validate::in_range(&construct, "MessageRetentionPeriod", self.retention_secs, Queue::RETENTION)?;
        validate::in_range(&construct, "ReceiveMessageWaitTimeSeconds", self.receive_wait_secs, Queue::RECEIVE_WAIT)?;
        let redrive_policy = match &self.dead_letter {
            None => None,
            Some((dlq, max_receive_count)) => {
                stack.owns(&dlq.construct)?;
                validate::in_range(
                    &construct,
                    "RedrivePolicy.maxReceiveCount",
                    *max_receive_count,
                    Queue::MAX_RECEIVE_COUNT,
                )?;
                // A standard queue keeps a message's first enqueue time when it moves to the
                // DLQ, so a DLQ that keeps messages no longer than the source would lose them.
                if dlq.retention_secs <= self.retention_secs {
                    return Err(Error::invalid(
                        &dlq.construct,
                        "MessageRetentionPeriod",
                        dlq.retention_secs,
                        format!(
                            "must be longer than the retention of {construct} ({} s), or moved messages can expire at once",
                            self.retention_secs
                        ),
                    ));
                }
                if let Some(allowed) = &dlq.redrive_allow {
                    if !self.name.as_ref().is_some_and(|n| allowed.contains(n)) {
                        return Err(Error::invalid(
                            &construct,
                            "RedrivePolicy.deadLetterTargetArn",
                            dlq.construct.to_string(),
                            format!(
                                "that queue's RedriveAllowPolicy admits only {allowed:?}: name this queue one of them (QueueName = {:?})",
                                self.name
                            ),
                        ));
                    }
                }
                Some(json!({ "deadLetterTargetArn": dlq.arn(), "maxReceiveCount": max_receive_count }))
            }
        };
        let redrive_allow_policy = match &self.redrive_allow {
            None => None,
            Some(sources) => {
                if !Queue::REDRIVE_ALLOW_SOURCES.contains(&sources.len()) {
                    return Err(Error::invalid(
                        &construct,
                        "RedriveAllowPolicy.sourceQueueArns",
                        format!("{} queues", sources.len()),
                        "must name 1 to 10 source queues",
                    ));
                }
                for name in sources {
                    validate::name(
                        &construct,
                        "RedriveAllowPolicy.sourceQueueArns",
                        name,
                        1..=80,
                        validate::alnum_or("-_"),
                        "A-Z, a-z, 0-9, - and _",
                    )?;
                }
                let arns: Vec<Expr> = sources
                    .iter()
                    .map(|name| {
                        Expr::Sub(format!("arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{name}"))
                    })
                    .collect();
                Some(json!({ "redrivePermission": "byQueue", "sourceQueueArns": arns }))
            }
        };
        let props = QueueProperties {
            queue_name: self.name.as_deref(),
            visibility_timeout: self.visibility_timeout_secs,
            message_retention_period: self.retention_secs,
            receive_message_wait_time_seconds: self.receive_wait_secs,
            sqs_managed_sse_enabled: self.encrypted,
            redrive_policy,
            redrive_allow_policy,
        };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(Queue {
            construct,
            name: self.name,
            visibility_timeout_secs: self.visibility_timeout_secs,
            retention_secs: self.retention_secs,
            dead_letter: self.dead_letter.map(|(q, n)| (q.construct, n)),
            redrive_allow: self.redrive_allow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::LogicalId;

    fn props(stack: &Stack, id: &str) -> serde_json::Value {
        stack.to_template().unwrap().resources[&LogicalId::new(id).unwrap()].properties.clone()
    }

    fn build(f: impl FnOnce(QueueBuilder) -> QueueBuilder) -> Result<Queue> {
        let mut stack = Stack::new("s", "").unwrap();
        f(Queue::builder("Q")).build(&mut stack)
    }

    #[test]
    fn defaults_are_safe() {
        let mut stack = Stack::new("s", "").unwrap();
        Queue::builder("Q").build(&mut stack).unwrap();
        assert_eq!(
            props(&stack, "Q"),
            json!({
                "VisibilityTimeout": 30,
                "MessageRetentionPeriod": 345600,
                "ReceiveMessageWaitTimeSeconds": 20,
                "SqsManagedSseEnabled": true,
            })
        );
    }

    type Setter = fn(QueueBuilder, u32) -> QueueBuilder;

    #[test]
    fn limits_on_both_sides() {
        // (property, setter, accepted, refused); 0 is the floor of u32, so a range starting
        // at 0 has nothing to refuse below it.
        let cases: [(&str, Setter, [u32; 2], &[u32]); 3] = [
            ("VisibilityTimeout", QueueBuilder::visibility_timeout_secs, [0, 43_200], &[43_201]),
            ("MessageRetentionPeriod", QueueBuilder::retention_secs, [60, 1_209_600], &[59, 1_209_601]),
            ("ReceiveMessageWaitTimeSeconds", QueueBuilder::receive_wait_secs, [0, 20], &[21]),
        ];
        for (property, set, accepted, refused) in cases {
            for ok in accepted {
                assert!(build(|b| set(b, ok)).is_ok(), "{property} {ok}");
            }
            for &bad in refused {
                let err = build(|b| set(b, bad)).unwrap_err().to_string();
                assert!(err.starts_with(&format!("sqs::Queue `Q`: {property} = {bad} is invalid")), "{err}");
            }
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(build(|b| b.queue_name("a".repeat(80))).is_ok());
        assert!(build(|b| b.queue_name("Metrics-Queue_1")).is_ok());
        assert!(build(|b| b.queue_name("a".repeat(81))).is_err());
        assert!(build(|b| b.queue_name("")).is_err());
        let err = build(|b| b.queue_name("metrics.queue")).unwrap_err().to_string();
        assert!(err.contains("QueueName = \"metrics.queue\""), "{err}");
    }

    #[test]
    fn dead_letter_queue_redrive_and_limits() {
        for (count, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            let mut stack = Stack::new("s", "").unwrap();
            let dlq = Queue::builder("Dlq").retention_secs(1_209_600).build(&mut stack).unwrap();
            let r = Queue::builder("Q").dead_letter_queue(&dlq, count).build(&mut stack);
            assert_eq!(r.is_ok(), ok, "{count}: {r:?}");
            if ok {
                assert_eq!(
                    props(&stack, "Q")["RedrivePolicy"],
                    json!({"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": count})
                );
            } else {
                assert!(r.unwrap_err().to_string().contains("RedrivePolicy.maxReceiveCount"));
            }
        }
    }

    #[test]
    fn dead_letter_queue_must_outlive_its_source() {
        let mut stack = Stack::new("s", "").unwrap();
        let dlq = Queue::builder("Dlq").retention_secs(345_600).build(&mut stack).unwrap();
        let err = Queue::builder("Q").dead_letter_queue(&dlq, 5).build(&mut stack).unwrap_err().to_string();
        assert!(err.starts_with("sqs::Queue `Dlq`: MessageRetentionPeriod = 345600 is invalid"), "{err}");
        let longer = Queue::builder("Dlq2").retention_secs(345_601).build(&mut stack).unwrap();
        assert!(Queue::builder("Q2").dead_letter_queue(&longer, 5).build(&mut stack).is_ok());
    }

    #[test]
    fn redrive_allow_policy_names_its_sources_and_refuses_others() {
        let mut stack = Stack::new("s", "").unwrap();
        let dlq =
            Queue::builder("Dlq").retention_secs(1_209_600).redrive_allow_only(&["Source"]).build(&mut stack).unwrap();
        assert_eq!(dlq.redrive_allow(), Some(&["Source".to_owned()][..]));
        assert_eq!(
            props(&stack, "Dlq")["RedriveAllowPolicy"],
            json!({
                "redrivePermission": "byQueue",
                "sourceQueueArns": [{"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:Source"}],
            })
        );
        assert!(Queue::builder("Q").queue_name("Source").dead_letter_queue(&dlq, 5).build(&mut stack).is_ok());
        for other in [Some("Other"), None] {
            let mut b = Queue::builder(if other.is_some() { "Q2" } else { "Q3" }).dead_letter_queue(&dlq, 5);
            if let Some(name) = other {
                b = b.queue_name(name);
            }
            let err = b.build(&mut stack).unwrap_err().to_string();
            assert!(err.contains("RedrivePolicy.deadLetterTargetArn = sqs::Queue `Dlq` is invalid"), "{err}");
            assert!(err.contains("admits only [\"Source\"]"), "{err}");
        }
    }

    #[test]
    fn redrive_allow_policy_limits() {
        let names: Vec<String> = (0..11).map(|i| format!("q{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for (n, ok) in [(0, false), (1, true), (10, true), (11, false)] {
            let r = build(|b| b.redrive_allow_only(&names[..n]));
            assert_eq!(r.is_ok(), ok, "{n} sources: {r:?}");
            if !ok {
                assert!(r.unwrap_err().to_string().contains("RedriveAllowPolicy.sourceQueueArns"));
            }
        }
        let err = build(|b| b.redrive_allow_only(&["bad.name"])).unwrap_err().to_string();
        assert!(err.contains("RedriveAllowPolicy.sourceQueueArns = \"bad.name\""), "{err}");
    }

    #[test]
    fn dead_letter_queue_from_another_stack_is_refused() {
        let mut other = Stack::new("other", "").unwrap();
        let dlq = Queue::builder("Dlq").retention_secs(1_209_600).build(&mut other).unwrap();
        let mut stack = Stack::new("s", "").unwrap();
        assert!(matches!(
            Queue::builder("Q").dead_letter_queue(&dlq, 5).build(&mut stack),
            Err(Error::ForeignConstruct { .. })
        ));
    }
}
