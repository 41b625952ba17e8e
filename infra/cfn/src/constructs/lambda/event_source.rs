//! The SQS `AWS::Lambda::EventSourceMapping`: batch size, batching window, concurrency and
//! per-record failure reporting, checked against the queue's visibility timeout.

use std::panic::Location;

use serde::Serialize;
use serde_json::json;

use super::Function;
use crate::constructs::sqs::Queue;
use crate::constructs::{validate, ConstructRef, Kind, Stack};
use crate::error::{Error, Result};
use crate::template::{Expr, Resource, ResourceProperties};

/// Builder of an SQS `AWS::Lambda::EventSourceMapping`. Defaults: batches of 10, no batching
/// window, per-record failure reporting on.
#[derive(Clone, Debug)]
pub struct EventSourceMappingBuilder {
    id: String,
    queue: Queue,
    function: Function,
    batch_size: u32,
    batching_window_secs: u32,
    report_batch_item_failures: bool,
    max_concurrency: Option<u32>,
    enabled: bool,
}

/// A built mapping: what Lambda's poller does with the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSourceMapping {
    construct: ConstructRef,
    queue: Queue,
    function: Function,
    batch_size: u32,
    batching_window_secs: u32,
    report_batch_item_failures: bool,
    max_concurrency: Option<u32>,
    enabled: bool,
}

/// The properties of `AWS::Lambda::EventSourceMapping`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappingProperties {
    event_source_arn: Expr,
    function_name: Expr,
    batch_size: u32,
    maximum_batching_window_in_seconds: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    function_response_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling_config: Option<serde_json::Value>,
    enabled: bool,
}

impl ResourceProperties for MappingProperties {
    const TYPE: &'static str = "AWS::Lambda::EventSourceMapping";
}

impl EventSourceMapping {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <MappingProperties as ResourceProperties>::TYPE;

    pub const BATCH_SIZE: std::ops::RangeInclusive<u32> = 1..=10_000;
    pub const BATCHING_WINDOW_SECS: std::ops::RangeInclusive<u32> = 0..=300;
    pub const MAX_CONCURRENCY: std::ops::RangeInclusive<u32> = 2..=1_000;

    /// How Lambda scales an SQS mapping's concurrent batches while messages wait (Lambda
    /// Developer Guide, "Configuring scaling behavior for SQS event source mappings"): it starts
    /// with five, adds up to 300 a minute, and runs at most 1,000 (or `MaximumConcurrency`).
    /// It does not account for the function's reserved concurrency: invocations beyond it are
    /// throttled.
    pub const SQS_INITIAL_BATCHES: u32 = 5;
    pub const SQS_SCALE_UP_PER_MINUTE: u32 = 300;
    pub const SQS_MAX_BATCHES: u32 = 1_000;

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// The queue polled.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The function invoked.
    pub fn function(&self) -> &Function {
        &self.function
    }

    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }

    pub fn batching_window_secs(&self) -> u32 {
        self.batching_window_secs
    }

    pub fn reports_batch_item_failures(&self) -> bool {
        self.report_batch_item_failures
    }

    /// `ScalingConfig.MaximumConcurrency`, when set.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.max_concurrency
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `function` consumes `queue`; building it grants the function what consuming needs.
    pub fn sqs(id: &str, queue: &Queue, function: &Function) -> EventSourceMappingBuilder {
        EventSourceMappingBuilder {
            id: id.to_owned(),
            queue: queue.clone(),
            function: function.clone(),
            batch_size: 10,
            batching_window_secs: 0,
            report_batch_item_failures: true,
            max_concurrency: None,
            enabled: true,
        }
    }
}

impl EventSourceMappingBuilder {
    /// 1 to 10000; above 10 only with a batching window of at least 1 s.
    pub fn batch_size(mut self, size: u32) -> Self {
        self.batch_size = size;
        self
    }

    /// 0 to 300 s.
    pub fn batching_window_secs(mut self, secs: u32) -> Self {
        self.batching_window_secs = secs;
        self
    }

    pub fn report_batch_item_failures(mut self, on: bool) -> Self {
        self.report_batch_item_failures = on;
        self
    }

    /// Most concurrent invocations this source drives, 2 to 1000.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<EventSourceMapping> {
        let construct = stack.claim(&self.id, Kind::of::<MappingProperties>(), Location::caller())?;
        stack.owns(self.queue.construct())?;
        stack.owns(&self.function.construct)?;
        validate::in_range(&construct, "BatchSize", self.batch_size, EventSourceMapping::BATCH_SIZE)?;
        validate::in_range(
            &construct,
            "MaximumBatchingWindowInSeconds",
            self.batching_window_secs,
            EventSourceMapping::BATCHING_WINDOW_SECS,
        )?;
        // AWS rejects this; cfn-lint does not catch it.
        if self.batch_size > 10 && self.batching_window_secs < 1 {
            return Err(Error::invalid(
                &construct,
                "BatchSize",
                self.batch_size,
                "above 10 needs MaximumBatchingWindowInSeconds of at least 1",
            ));
        }
        if let Some(n) = self.max_concurrency {
            validate::in_range(&construct, "ScalingConfig.MaximumConcurrency", n, EventSourceMapping::MAX_CONCURRENCY)?;
        }
        // AWS's guidance (Lambda Developer Guide, "Creating and configuring an Amazon SQS event
        // source mapping": at least six times the function's timeout, plus the batching
        // window): room for Lambda to retry a throttled batch before the message becomes
        // visible again and is handed out twice.
        let needed = 6 * self.function.timeout_secs + self.batching_window_secs;
        if self.queue.visibility_timeout_secs() < needed {
            return Err(Error::invalid(
                self.queue.construct(),
                "VisibilityTimeout",
                self.queue.visibility_timeout_secs(),
                format!(
                    "must be at least {needed} s for {} (6 x its timeout of {} s + batching window of {} s)",
                    self.function.construct, self.function.timeout_secs, self.batching_window_secs
                ),
            ));
        }
        self.queue.grant_consume(stack, &self.function)?;
        let props = MappingProperties {
            event_source_arn: self.queue.arn(),
            function_name: self.function.function_name(),
            batch_size: self.batch_size,
            maximum_batching_window_in_seconds: self.batching_window_secs,
            function_response_types: if self.report_batch_item_failures {
                vec!["ReportBatchItemFailures"]
            } else {
                vec![]
            },
            scaling_config: self.max_concurrency.map(|n| json!({ "MaximumConcurrency": n })),
            enabled: self.enabled,
        };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(EventSourceMapping {
            construct,
            queue: self.queue,
            function: self.function,
            batch_size: self.batch_size,
            batching_window_secs: self.batching_window_secs,
            report_batch_item_failures: self.report_batch_item_failures,
            max_concurrency: self.max_concurrency,
            enabled: self.enabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constructs::lambda::Code;
    use crate::template::{LogicalId, Template};

    fn get(t: &Template, id: &str) -> Resource {
        t.resources[&LogicalId::new(id).unwrap()].clone()
    }

    struct Setup {
        stack: Stack,
        queue: Queue,
        function: Function,
    }

    fn setup(visibility: u32, timeout: u32) -> Setup {
        let mut stack = Stack::new("s", "").unwrap();
        let queue = Queue::builder("Q").visibility_timeout_secs(visibility).build(&mut stack).unwrap();
        let function = Function::builder("Fn", Code::asset("f")).timeout_secs(timeout).build(&mut stack).unwrap();
        Setup { stack, queue, function }
    }

    fn mapping(
        visibility: u32,
        f: impl FnOnce(EventSourceMappingBuilder) -> EventSourceMappingBuilder,
    ) -> Result<Stack> {
        let mut s = setup(visibility, 30);
        f(EventSourceMapping::sqs("M", &s.queue, &s.function)).build(&mut s.stack)?;
        Ok(s.stack)
    }

    #[test]
    fn mapping_renders_and_grants_consume() {
        let stack = mapping(210, |m| m.batching_window_secs(30).max_concurrency(2)).unwrap();
        let t = stack.to_template().unwrap();
        assert_eq!(
            get(&t, "M").properties,
            json!({
                "EventSourceArn": {"Fn::GetAtt": ["Q", "Arn"]},
                "FunctionName": {"Ref": "Fn"},
                "BatchSize": 10,
                "MaximumBatchingWindowInSeconds": 30,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": 2},
                "Enabled": true,
            })
        );
        let statements = &get(&t, "FnRole").properties["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(
            statements[1]["Action"],
            json!(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"])
        );
        assert_eq!(statements[1]["Resource"], json!([{"Fn::GetAtt": ["Q", "Arn"]}]));
    }

    #[test]
    fn batch_size_limits_and_the_window_rule() {
        let cases = [
            (0, 0, false),
            (1, 0, true),
            (10, 0, true),
            (11, 0, false),
            (11, 1, true),
            (10_000, 1, true),
            (10_001, 1, false),
        ];
        for (size, window, ok) in cases {
            let r = mapping(900, |m| m.batch_size(size).batching_window_secs(window));
            assert_eq!(r.is_ok(), ok, "batch {size} window {window}: {r:?}");
        }
        let err = mapping(900, |m| m.batch_size(11)).unwrap_err().to_string();
        assert!(err.contains("BatchSize = 11 is invalid: above 10 needs MaximumBatchingWindowInSeconds"), "{err}");
    }

    #[test]
    fn batching_window_and_concurrency_limits() {
        assert!(mapping(900, |m| m.batching_window_secs(300)).is_ok());
        let err = mapping(900, |m| m.batching_window_secs(301)).unwrap_err().to_string();
        assert!(err.contains("MaximumBatchingWindowInSeconds = 301"), "{err}");
        assert!(mapping(900, |m| m.max_concurrency(1)).is_err());
        assert!(mapping(900, |m| m.max_concurrency(1000)).is_ok());
        assert!(mapping(900, |m| m.max_concurrency(1001)).is_err());
    }

    #[test]
    fn queue_visibility_must_cover_six_timeouts_plus_the_window() {
        assert!(mapping(210, |m| m.batching_window_secs(30)).is_ok());
        let err = mapping(209, |m| m.batching_window_secs(30)).unwrap_err().to_string();
        assert_eq!(
            err,
            "sqs::Queue `Q`: VisibilityTimeout = 209 is invalid: must be at least 210 s for lambda::Function `Fn` \
             (6 x its timeout of 30 s + batching window of 30 s)"
        );
    }
}
