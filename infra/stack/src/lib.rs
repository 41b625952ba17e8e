//! This app's stack: the workshop's "business metrics with SQS and DynamoDB" system, built from
//! typed props whose defaults are the workshop's values.

mod selection;

pub use selection::{StackArgs, StackChoice, APP_TAG};

use cfn::constructs::capacity::{self, WritePlan};
use cfn::constructs::cloudwatch::{Alarm, Comparison, Dashboard, GraphWidget, Line};
use cfn::constructs::cloudwatch::{Metric, Statistic};
use cfn::constructs::dynamodb::{Billing, Key, RemovalPolicy, Table};
use cfn::constructs::events::{EventBus, EventPattern, Rule, SqsTarget};
use cfn::constructs::lambda::{Architecture, Code, EventSourceMapping, Function};
use cfn::constructs::logs::Retention;
use cfn::constructs::sns::Topic;
use cfn::constructs::sqs::Queue;
use cfn::constructs::validate::{self, EMAIL_PATTERN};
use cfn::constructs::Stack;
use cfn::error::{Error, Result};
use cfn::template::{ConditionExpr, Expr, Parameter};
use order_events::capacity::{Peak, WriteBudget, ANSWER_MARGIN_SECS, MAX_WCU_PER_ORDER, WRITE_ATTEMPT_SECS};

/// cargo-lambda binary names of the two functions.
pub use order_events::assets::{EVENTS_LOAD_TEST as EVENTS_LOAD_TEST_ASSET, PUBLISH_METRICS as PUBLISH_METRICS_ASSET};

pub use order_events::TTL_ATTRIBUTE;

/// The core app's bus, which only the production stack imports.
pub const PRODUCTION_BUS: &str = "Serverlesspresso";

/// Whether the stack owns the bus or uses the core app's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusProps {
    Import { name: String },
    Create { name: String },
}

/// Everything that differs between two deployments of the metrics stack.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsStackProps {
    pub stack_name: String,
    pub bus: BusProps,
    pub rule_name: String,
    pub queue_name: String,
    pub dead_letter_queue_name: String,
    pub table_name: String,
    pub table_billing: Billing,
    pub publish_function_name: String,
    pub load_test_function_name: String,
    pub architecture: Architecture,
    pub publish_timeout_secs: u32,
    pub publish_memory_mb: u32,
    pub publish_reserved_concurrency: u32,
    pub batch_size: u32,
    pub batching_window_secs: u32,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    pub log_retention: Retention,
    /// Alarm when the oldest waiting message is this old.
    pub oldest_message_alarm_secs: u32,
    /// Who the alarms e-mail: the default of the `AlarmEmail` parameter (empty: no
    /// subscription until a deploy gives an address).
    pub alarm_email: Option<String>,
    /// The burst the queue must absorb: at the paced rate it must drain before the queue-age
    /// alarm fires and within the queue's retention (checked at synth).
    pub peak: Peak,
}

impl Default for MetricsStackProps {
    /// The workshop's values, with the core app's bus imported.
    fn default() -> Self {
        MetricsStackProps {
            stack_name: "serverlesspresso-metrics".to_owned(),
            bus: BusProps::Import { name: PRODUCTION_BUS.to_owned() },
            rule_name: "OrderMetrics-DynamoDB".to_owned(),
            queue_name: "MetricsQueue".to_owned(),
            dead_letter_queue_name: "MetricsQueue-DLQ".to_owned(),
            table_name: "serverlesspresso-metrics-table".to_owned(),
            table_billing: Billing::Provisioned { read: 5, write: 5 },
            publish_function_name: "PublishMetrics".to_owned(),
            load_test_function_name: "EventsLoadTest".to_owned(),
            architecture: Architecture::Arm64,
            publish_timeout_secs: 30,
            publish_memory_mb: 256,
            publish_reserved_concurrency: 1,
            batch_size: 10,
            batching_window_secs: 30,
            // With reserved concurrency 1, Lambda's SQS pollers (five or more) keep receiving
            // while the one execution is busy; each throttled receive counts toward this. AWS
            // advises at least 5; 10 leaves room for a 500-order burst, so only a message that
            // fails in the handler again and again reaches the DLQ.
            max_receive_count: order_events::MAX_RECEIVE_COUNT,
            log_retention: Retention::TwoWeeks,
            oldest_message_alarm_secs: 900,
            alarm_email: None,
            peak: Peak::LOAD_TEST,
        }
    }
}

impl MetricsStackProps {
    /// The workshop's stack, but creating its own bus, so it deploys alone (fresh account,
    /// local runs, tests).
    pub fn standalone() -> Self {
        MetricsStackProps {
            stack_name: "serverlesspresso-metrics-standalone".to_owned(),
            bus: BusProps::Create { name: PRODUCTION_BUS.to_owned() },
            ..Self::default()
        }
    }

    /// Another environment of the same stack: every physical name suffixed with `-<env>`, and
    /// a bus of its own (`Serverlesspresso-<env>`), or the bus `import_bus` names. It never
    /// imports the production bus: a staging load test must not land in production's table,
    /// nor staging count production's orders.
    pub fn for_environment(env: &str, import_bus: Option<&str>) -> Result<Self> {
        let d = Self::default();
        let s = |name: &str| format!("{name}-{env}");
        let bus = match import_bus {
            Some(name) if name == PRODUCTION_BUS => {
                return Err(Error::invalid(
                    format!("MetricsStackProps for environment `{env}`"),
                    "bus",
                    name,
                    "another environment never imports the production bus: omit it to create `Serverlesspresso-ENV`, or name that environment's bus",
                ))
            }
            Some(name) => BusProps::Import { name: name.to_owned() },
            None => BusProps::Create { name: s(PRODUCTION_BUS) },
        };
        Ok(MetricsStackProps {
            stack_name: s(&d.stack_name),
            bus,
            rule_name: s(&d.rule_name),
            queue_name: s(&d.queue_name),
            dead_letter_queue_name: s(&d.dead_letter_queue_name),
            table_name: s(&d.table_name),
            publish_function_name: s(&d.publish_function_name),
            load_test_function_name: s(&d.load_test_function_name),
            ..d
        })
    }
}

/// The built metrics stack: the stack to synthesize, and typed handles to what is in it, for
/// the tools (local runs, deploy commands, tests) to read instead of the rendered template.
#[derive(Debug)]
pub struct MetricsStack {
    stack: Stack,
    bus: EventBus,
    rule: Rule,
    queue: Queue,
    dead_letters: Queue,
    table: Table,
    publish: Function,
    load_test: Function,
    mapping: EventSourceMapping,
    alarms: Topic,
    queue_age_alarm: Alarm,
    dashboard: Dashboard,
    capacity: Capacity,
}

/// What the stack's capacity comes to: the write budget PublishMetrics paces itself to, and
/// how long the declared peak takes to drain. `synth` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    /// How the table's write capacity is shared (`None`: on demand, unpaced).
    pub plan: Option<WritePlan>,
    /// Each PublishMetrics instance's budget, as its environment holds it.
    pub budget: WriteBudget,
    /// Write capacity per order with full batches of the peak's drinks.
    pub wcu_per_order: f64,
    pub peak: Peak,
    /// Seconds the peak takes to drain at the paced rate.
    pub drain_secs: Option<f64>,
    pub queue_age_alarm_secs: f64,
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use cfn::constructs::capacity::Duration;
        let Some(plan) = &self.plan else {
            return write!(f, "capacity: on demand (writes not paced), {:.2} WCU per order", self.wcu_per_order);
        };
        write!(f, "capacity: {} WCU", plan.provisioned_wcu)?;
        if plan.instances > 1 {
            write!(f, " ({} WCU/s for each of {} instances)", self.budget, plan.instances)?;
        }
        write!(
            f,
            ", {:.2} WCU per order, {:.1} orders/s sustained",
            self.wcu_per_order,
            plan.total_wcu() / self.wcu_per_order
        )?;
        if let Some(drain) = self.drain_secs {
            write!(
                f,
                ", {} orders drain in {} (queue-age alarm at {})",
                self.peak.orders,
                Duration(drain),
                Duration(self.queue_age_alarm_secs)
            )?;
        }
        Ok(())
    }
}

impl MetricsStack {
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn into_stack(self) -> Stack {
        self.stack
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        self.stack.name()
    }

    pub fn to_template(&self) -> Result<cfn::template::Template> {
        self.stack.to_template()
    }

    /// The bus the rule listens on (created or imported).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// MetricsQueue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn dead_letters(&self) -> &Queue {
        &self.dead_letters
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// PublishMetrics.
    pub fn publish(&self) -> &Function {
        &self.publish
    }

    /// EventsLoadTest.
    pub fn load_test(&self) -> &Function {
        &self.load_test
    }

    /// Every function of the stack.
    pub fn functions(&self) -> [&Function; 2] {
        [&self.publish, &self.load_test]
    }

    /// PublishMetrics' SQS event source.
    pub fn mapping(&self) -> &EventSourceMapping {
        &self.mapping
    }

    /// The topic every alarm notifies.
    pub fn alarms(&self) -> &Topic {
        &self.alarms
    }

    /// The alarm on the age of MetricsQueue's oldest message.
    pub fn queue_age_alarm(&self) -> &Alarm {
        &self.queue_age_alarm
    }

    /// The dashboard of the workshop's graphs.
    pub fn dashboard(&self) -> &Dashboard {
        &self.dashboard
    }

    /// The write budget and the peak's drain.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// One of PublishMetrics' own metrics (`order_events::emf`), as the alarms and the
    /// dashboard read it.
    pub fn handler_metric(&self, name: &'static str) -> Metric {
        handler_metric(&self.publish, name)
    }
}

/// PublishMetrics' metric `name` (Embedded Metric Format in its logs), with its function's name
/// as the dimension.
fn handler_metric(publish: &Function, name: &'static str) -> Metric {
    Metric::new(
        order_events::emf::NAMESPACE,
        name,
        (order_events::emf::DIMENSION, publish.function_name()),
        Statistic::Sum,
    )
}

/// Builds the metrics stack from `props`.
pub fn metrics_stack(props: &MetricsStackProps) -> Result<MetricsStack> {
    let mut stack = Stack::new(
        &props.stack_name,
        "Serverlesspresso business metrics: order events from EventBridge, buffered by SQS, counted into DynamoDB",
    )?;
    let bus = match &props.bus {
        BusProps::Import { name } => EventBus::import(name)?,
        BusProps::Create { name } => EventBus::create(&mut stack, "EventBus", name)?,
    };

    let dead_letters = Queue::builder("MetricsDeadLetterQueue")
        .queue_name(&props.dead_letter_queue_name)
        .retention_secs(1_209_600)
        .redrive_allow_only(&[&props.queue_name])
        .build(&mut stack)?;
    let queue = Queue::builder("MetricsQueue")
        .queue_name(&props.queue_name)
        .visibility_timeout_secs(6 * props.publish_timeout_secs + props.batching_window_secs)
        .retention_secs(345_600)
        .dead_letter_queue(&dead_letters, props.max_receive_count)
        .build(&mut stack)?;

    let table = Table::builder("MetricsTable", Key::string(order_events::PARTITION_KEY))
        .sort_key(Key::string(order_events::SORT_KEY))
        .table_name(&props.table_name)
        .billing(props.table_billing)
        .point_in_time_recovery(true)
        .ttl_attribute(TTL_ATTRIBUTE)
        .removal_policy(RemovalPolicy::Retain)
        .build(&mut stack)?;

    let publish = Function::builder("PublishMetrics", Code::asset(PUBLISH_METRICS_ASSET))
        .function_name(&props.publish_function_name)
        .description("Counts order events from MetricsQueue into the metrics table")
        .architecture(props.architecture)
        .memory_mb(props.publish_memory_mb)
        .timeout_secs(props.publish_timeout_secs)
        .reserved_concurrency(props.publish_reserved_concurrency)
        .env(order_events::env::TABLE_NAME, table.table_name())
        .log_retention(props.log_retention);
    // Each instance's share of the table's write capacity, which it paces its writes to.
    let plan = WritePlan::share(&table, &publish, None)?;
    let budget = plan.and_then(|p| WriteBudget::per_second_milli(p.share_milli_wcu)).unwrap_or(WriteBudget::Unpaced);
    let publish = publish.env(order_events::env::WRITE_BUDGET, Expr::lit(budget.to_string())).build(&mut stack)?;
    table.grant_write_keys(&mut stack, &publish, &order_events::WRITTEN_PARTITION_KEYS)?;
    let mapping = EventSourceMapping::sqs("PublishMetricsQueueMapping", &queue, &publish)
        .batch_size(props.batch_size)
        .batching_window_secs(props.batching_window_secs)
        .report_batch_item_failures(true)
        .build(&mut stack)?;

    let load_test = Function::builder("EventsLoadTest", Code::asset(EVENTS_LOAD_TEST_ASSET))
        .function_name(&props.load_test_function_name)
        .description("Puts a burst of order events on the bus")
        .architecture(props.architecture)
        .memory_mb(256)
        .timeout_secs(120)
        // One flood at a time: two would double the burst the queue is shown to absorb.
        .reserved_concurrency(1)
        .env(order_events::env::EVENT_BUS_NAME, bus.bus_name())
        .log_retention(props.log_retention)
        .build(&mut stack)?;
    // The order events the metrics count, from the core app: the names the handlers read.
    let detail_types = order_events::DetailType::ALL.map(order_events::DetailType::as_str);
    // It may put only the order events it makes, so it can never pose as another producer.
    bus.grant_put_events_of(&mut stack, &load_test, order_events::SOURCE, &detail_types)?;

    let pattern = EventPattern::new().sources(&[order_events::SOURCE]).detail_types(&detail_types);
    let target = SqsTarget::new("MetricsQueue", &queue).dead_letter_queue(&dead_letters);
    check_delivery_window(&target, &queue, &dead_letters)?;
    let rule = Rule::builder("OrderMetricsRule", &bus, pattern)
        .name(&props.rule_name)
        .description("Order events for the business metrics")
        .target(target)
        .build(&mut stack)?;

    // Every alarm notifies a topic a person subscribes to (the AlarmEmail parameter).
    let name = &props.stack_name;
    if let Some(email) = &props.alarm_email {
        validate::email(&format!("MetricsStackProps `{name}`"), "alarm_email", email)?;
    }
    let email = stack.add_parameter(
        "AlarmEmail",
        Parameter {
            default: Some(props.alarm_email.clone().unwrap_or_default()),
            allowed_pattern: Some(format!("^$|{EMAIL_PATTERN}")),
            constraint_description: Some("an e-mail address, or empty for no subscription".to_owned()),
            ..Parameter::string("E-mail address the alarms notify (it must confirm the subscription); empty for none")
        },
    )?;
    let has_email = stack.add_condition(
        "HasAlarmEmail",
        ConditionExpr::Not(Box::new(ConditionExpr::Equals(email.reference(), Expr::lit("")))),
    )?;
    let alarms = Topic::builder("AlarmTopic")
        .name(format!("{name}-alarms"))
        .display_name("Serverlesspresso metrics alarms")
        .build(&mut stack)?;
    alarms.subscribe_email(&mut stack, "AlarmEmailSubscription", email.reference(), Some(&has_email))?;

    Alarm::builder("DeadLetterQueueAlarm", dead_letters.metric_visible_messages(), 1.0)
        .name(format!("{name}-dead-letters"))
        .description("Order events failed and are waiting in the dead-letter queue")
        .notify(&alarms)
        .build(&mut stack)?;
    let queue_age_alarm =
        Alarm::builder("QueueAgeAlarm", queue.metric_oldest_message_age(), f64::from(props.oldest_message_alarm_secs))
            .name(format!("{name}-queue-age"))
            .description("Order events wait too long in MetricsQueue: PublishMetrics is behind")
            .notify(&alarms)
            .build(&mut stack)?;
    Alarm::builder("PublishMetricsErrorsAlarm", publish.metric_errors(), 1.0)
        .name(format!("{name}-publish-errors"))
        .description("PublishMetrics failed")
        .notify(&alarms)
        .build(&mut stack)?;
    // PublishMetrics' own counts (Embedded Metric Format in its logs): records it could not
    // count are reported at once, long before maxReceiveCount moves them to the DLQ.
    Alarm::builder("BadRecordsAlarm", handler_metric(&publish, order_events::emf::BAD), 1.0)
        .name(format!("{name}-bad-records"))
        .description("PublishMetrics received order events it can never count (see its logs); they will reach the dead-letter queue")
        .notify(&alarms)
        .build(&mut stack)?;
    Alarm::builder("FailedRecordsAlarm", handler_metric(&publish, order_events::emf::FAILED), 1.0)
        .name(format!("{name}-failed-records"))
        .description(
            "PublishMetrics could not write some counts (throttling, faults, time out); SQS delivers them again",
        )
        .notify(&alarms)
        .build(&mut stack)?;
    Alarm::builder("TableWriteThrottleAlarm", table.metric_write_throttles(), 1.0)
        .name(format!("{name}-table-throttles"))
        .description("Writes to the metrics table are throttled")
        .comparison(Comparison::GreaterThanOrEqualToThreshold)
        .notify(&alarms)
        .build(&mut stack)?;

    let dashboard = Dashboard::builder("MetricsDashboard")
        .name(name.clone())
        .graph(GraphWidget {
            title: format!("{} concurrency", props.publish_function_name),
            lines: vec![
                Line::metric(publish.metric_concurrent_executions(), "Concurrent executions (max)"),
                Line::metric(publish.metric_throttles(), "Throttles"),
            ],
        })
        .graph(GraphWidget {
            title: format!("{} depth", props.queue_name),
            lines: vec![
                Line::metric(queue.metric_visible_messages(), "Waiting"),
                Line::metric(queue.metric_in_flight_messages(), "In flight"),
                Line::metric(dead_letters.metric_visible_messages(), "Dead letters"),
            ],
        })
        .graph(GraphWidget {
            title: format!("{} oldest message age (s)", props.queue_name),
            lines: vec![Line::metric(queue.metric_oldest_message_age(), "Oldest message age")],
        })
        .graph(GraphWidget {
            title: format!("{} records", props.publish_function_name),
            lines: vec![
                Line::metric(handler_metric(&publish, order_events::emf::COUNTED), "Counted"),
                Line::metric(handler_metric(&publish, order_events::emf::DUPLICATES), "Duplicates"),
                Line::metric(handler_metric(&publish, order_events::emf::BAD), "Bad"),
                Line::metric(handler_metric(&publish, order_events::emf::FAILED), "Failed"),
            ],
        })
        .graph(GraphWidget {
            title: "Write capacity: consumed vs provisioned".to_owned(),
            lines: vec![
                Line::hidden(table.metric_consumed_wcu(), "consumed"),
                Line::expression("consumedPerSecond", "consumed/PERIOD(consumed)", "Consumed WCU"),
                Line::metric(table.metric_provisioned_wcu(), "Provisioned WCU"),
            ],
        })
        .build(&mut stack)?;

    let capacity = check_capacity(&mut stack, props, &table, &mapping, plan, budget, &queue_age_alarm)?;
    acknowledge_scan_findings(&mut stack, &[&publish, &load_test], &[&queue, &dead_letters], &table, &alarms)?;

    stack.add_output("QueueUrl", "URL of MetricsQueue", queue.url())?;
    stack.add_output("QueueArn", "ARN of MetricsQueue", queue.arn())?;
    stack.add_output("DeadLetterQueueUrl", "URL of the dead-letter queue", dead_letters.url())?;
    stack.add_output(
        "DeadLetterQueueArn",
        "ARN of the dead-letter queue (the redrive's source)",
        dead_letters.arn(),
    )?;
    stack.add_output("TableName", "The metrics table", table.table_name())?;
    stack.add_output("PublishMetricsFunctionName", "The counting function", publish.function_name())?;
    stack.add_output("EventsLoadTestFunctionName", "The load-test function", load_test.function_name())?;
    stack.add_output("EventBusName", "The bus the rule listens on", bus.bus_name())?;
    stack.add_output("EventBusArn", "ARN of that bus", bus.arn())?;
    stack.add_output("AlarmTopicArn", "The topic every alarm notifies", alarms.arn())?;
    Ok(MetricsStack {
        stack,
        bus,
        rule,
        queue,
        dead_letters,
        table,
        publish,
        load_test,
        mapping,
        alarms,
        queue_age_alarm,
        dashboard,
        capacity,
    })
}

/// Every path by which a message reaches PublishMetrics without an operator ends inside the
/// dedupe window, with a day left to redrive ([`order_events::window`]): otherwise a dead
/// letter could be refused as too old before anyone could redrive it, or a retention changed
/// here would outlive the window without anyone noticing.
fn check_delivery_window(target: &SqsTarget, queue: &Queue, dead_letters: &Queue) -> Result<()> {
    let delivery = order_events::window::Delivery {
        bus_retry_secs: target.max_event_age_secs(),
        queue_retention_secs: queue.retention_secs(),
        dead_letter_retention_secs: dead_letters.retention_secs(),
    };
    delivery_error(delivery, queue, dead_letters)
}

fn delivery_error(delivery: order_events::window::Delivery, queue: &Queue, dead_letters: &Queue) -> Result<()> {
    delivery.check().map_err(|e| {
        Error::invalid(
            format!("{} (dead letters of {})", dead_letters.construct(), queue.construct()),
            "MessageRetentionPeriod",
            delivery.dead_letter_retention_secs,
            e.to_string(),
        )
    })
}

/// The capacity arithmetic of the built stack: the shares add up to no more than the table's
/// capacity, a full batch fits PublishMetrics' timeout at its share, the declared peak drains
/// before the queue-age alarm and the queue's retention; and a warning when the mapping starts
/// more batches than the reserved concurrency runs.
fn check_capacity(
    stack: &mut Stack,
    props: &MetricsStackProps,
    table: &Table,
    mapping: &EventSourceMapping,
    plan: Option<WritePlan>,
    budget: WriteBudget,
    queue_age_alarm: &Alarm,
) -> Result<Capacity> {
    let wcu_per_order = props.peak.wcu_per_order(mapping.batch_size());
    let drain_secs = match &plan {
        Some(plan) => {
            plan.check(table, mapping)?;
            plan.check_timeout(mapping, MAX_WCU_PER_ORDER, WRITE_ATTEMPT_SECS + ANSWER_MARGIN_SECS)?;
            let alarm = (queue_age_alarm.construct(), queue_age_alarm.threshold());
            Some(capacity::check_drain(mapping, plan, u64::from(props.peak.orders), wcu_per_order, alarm)?)
        }
        None => None,
    };
    capacity::poller_warning(stack, mapping);
    Ok(Capacity {
        plan,
        budget,
        wcu_per_order,
        peak: props.peak,
        drain_secs,
        queue_age_alarm_secs: queue_age_alarm.threshold(),
    })
}

/// The policy scan's (checkov's) findings this stack accepts, each with its reason; everything
/// else it reports is fixed in the constructs. A test runs the scan and fails on any finding
/// not accepted here, and on any acceptance the scan no longer needs.
fn acknowledge_scan_findings(
    stack: &mut Stack,
    functions: &[&Function],
    queues: &[&Queue],
    table: &Table,
    alarms: &Topic,
) -> Result<()> {
    for f in functions {
        let f_id = f.construct();
        stack.acknowledge(
            f_id,
            "CKV_AWS_116",
            "Lambda's dead-letter queue is for asynchronous invocations: PublishMetrics is invoked synchronously by its SQS mapping, whose failures go to MetricsQueue's own DLQ, and EventsLoadTest is invoked by a person who reads its report",
        )?;
        stack.acknowledge(
            f_id,
            "CKV_AWS_117",
            "the functions call only the public DynamoDB and EventBridge endpoints over TLS with IAM auth; a VPC would add NAT or endpoints and cold-start time and protect nothing here",
        )?;
        stack.acknowledge(
            f_id,
            "CKV_AWS_173",
            "the environment holds only resource names (table, bus), no secrets; Lambda encrypts it at rest with its service key",
        )?;
        stack.acknowledge(
            f.log_group().construct(),
            "CKV_AWS_158",
            "CloudWatch Logs encrypts log data at rest; these logs hold order IDs and drink names, no personal data, so a customer key (and its policy for logs) buys nothing",
        )?;
    }
    for q in queues {
        stack.acknowledge(
            q.construct(),
            "CKV_AWS_27",
            "encrypted at rest with SQS-managed keys (SqsManagedSseEnabled); checkov counts only KMS, and EventBridge cannot send to a queue under the AWS-managed KMS key, so KMS would need a customer key with a policy for events.amazonaws.com",
        )?;
    }
    stack.acknowledge(
        table.construct(),
        "CKV_AWS_119",
        "encrypted at rest with the AWS-owned key; the table holds daily counts and dedupe markers, no personal data, so a customer key adds cost and a key-policy failure mode for nothing",
    )?;
    stack.acknowledge(
        alarms.construct(),
        "CKV_AWS_26",
        "carries only alarm names and states; CloudWatch alarms cannot publish to a topic under the AWS-managed SNS key, and a customer key for this alone is not worth its cost",
    )?;
    Ok(())
}

/// The stacks `synth` writes: the workshop's (importing the core app's bus) and a standalone
/// one that creates its own bus.
pub fn app() -> Result<Vec<MetricsStack>> {
    [MetricsStackProps::default(), MetricsStackProps::standalone()].iter().map(metrics_stack).collect()
}

/// Everything `synth` writes into `synth-out/` for `stacks`: their templates and architecture
/// diagrams, and the event schemas.
pub fn artifacts(stacks: &[MetricsStack]) -> Result<Vec<cfn::synth::Artifact>> {
    let mut artifacts = cfn::synth::artifacts(stacks.iter().map(MetricsStack::stack))?;
    artifacts.extend(schema_artifacts());
    artifacts.extend(cfn::synth::diagram_artifacts(stacks.iter().map(MetricsStack::stack))?);
    Ok(artifacts)
}

/// Everything `synth` writes into `synth-out/` for the app.
pub fn app_artifacts() -> Result<Vec<cfn::synth::Artifact>> {
    artifacts(&app()?)
}

/// The JSON Schemas of the order events' details.
pub fn schema_artifacts() -> Vec<cfn::synth::Artifact> {
    order_events::detail_schemas()
        .into_iter()
        .map(|(file_name, contents)| cfn::synth::Artifact { file_name, contents, resources: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cfn::constructs::dynamodb::Billing;

    #[test]
    fn the_delivery_paths_fit_the_dedupe_window_on_one_side_only() {
        use order_events::window::DAY_SECS;
        let mut stack = Stack::new("s", "d").unwrap();
        let queue = Queue::builder("Q").retention_secs(4 * DAY_SECS).build(&mut stack).unwrap();
        let dlq = Queue::builder("Dlq").retention_secs(14 * DAY_SECS).build(&mut stack).unwrap();
        // AWS's longest settings (a day of EventBridge retries, 14 days in SQS) plus a day to
        // redrive are the window exactly.
        let target = SqsTarget::new("T", &queue).retry_policy(185, DAY_SECS);
        assert_eq!(check_delivery_window(&target, &queue, &dlq), Ok(()));
        // A window a second shorter (or a longer path) is refused, naming the queues and value.
        let err = delivery_error(
            order_events::window::Delivery {
                bus_retry_secs: DAY_SECS + 1,
                queue_retention_secs: 4 * DAY_SECS,
                dead_letter_retention_secs: 14 * DAY_SECS,
            },
            &queue,
            &dlq,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Dlq") && err.contains("MessageRetentionPeriod = 1209600"), "{err}");
        assert!(err.contains("1382401 s after its event"), "{err}");
        // The app's own stacks pass.
        assert!(app().is_ok());
    }

    #[test]
    fn schemas_are_artifacts() {
        let schemas = schema_artifacts();
        assert_eq!(schemas.len(), 3);
        assert!(schemas.iter().all(|s| s.file_name.ends_with(".schema.json") && s.resources.is_none()));
        assert!(schemas[0].summary().starts_with("JSON Schema, "));
    }

    fn budget_of(stack: &MetricsStack) -> String {
        match &stack.publish().environment()[order_events::env::WRITE_BUDGET] {
            Expr::Literal(v) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publish_metrics_is_given_its_share_of_the_write_capacity() {
        let stack = metrics_stack(&Default::default()).unwrap();
        assert_eq!(budget_of(&stack), "5");
        assert_eq!(stack.capacity().budget.to_string(), "5");
        // Three instances: a third each, rounded down, and said in the capacity line. A full
        // batch at a third of the capacity needs 36 s + 3 s: the workshop's 30 s timeout is short.
        let props = MetricsStackProps { publish_reserved_concurrency: 3, ..Default::default() };
        let err = metrics_stack(&props).unwrap_err().to_string();
        assert!(err.contains("takes 36.0 s at its write budget of 1.666 WCU/s"), "{err}");
        let props =
            MetricsStackProps { publish_reserved_concurrency: 3, publish_timeout_secs: 40, ..Default::default() };
        let stack = metrics_stack(&props).unwrap();
        assert_eq!(budget_of(&stack), "1.666");
        assert!(
            stack
                .capacity()
                .to_string()
                .starts_with("capacity: 5 WCU (1.666 WCU/s for each of 3 instances), 2.80 WCU per order, 1.8 orders/s"),
            "{}",
            stack.capacity()
        );
        // On demand: nothing to share, nothing paced.
        let props = MetricsStackProps { table_billing: Billing::OnDemand, ..Default::default() };
        let stack = metrics_stack(&props).unwrap();
        assert_eq!(budget_of(&stack), "unpaced");
        assert_eq!(stack.capacity().to_string(), "capacity: on demand (writes not paced), 2.80 WCU per order");
    }

    #[test]
    fn the_capacity_rules_name_the_prop_that_breaks_them() {
        // A full batch at up to 6 WCU an order takes 12 s at 5 WCU/s, plus 3 s.
        assert!(metrics_stack(&MetricsStackProps { publish_timeout_secs: 15, ..Default::default() }).is_ok());
        let err = metrics_stack(&MetricsStackProps { publish_timeout_secs: 14, ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("lambda::Function `PublishMetrics`: Timeout = 14 is invalid"), "{err}");
        // A peak the paced rate cannot drain before the queue-age alarm.
        let peak = |orders| MetricsStackProps { peak: Peak { orders, drinks: 3 }, ..Default::default() };
        assert!(metrics_stack(&peak(1607)).is_ok());
        let err = metrics_stack(&peak(1608)).unwrap_err().to_string();
        assert!(err.contains("peak = 1608 messages is invalid"), "{err}");
        assert!(err.contains("queue-age") || err.contains("QueueAgeAlarm"), "{err}");
        // A longer alarm threshold lets the same peak through.
        let props = MetricsStackProps { oldest_message_alarm_secs: 1800, ..peak(1608) };
        assert!(metrics_stack(&props).is_ok());
    }

    #[test]
    fn the_metrics_stack_as_a_graph() {
        let stack = metrics_stack(&Default::default()).unwrap();
        let d = cfn::diagram::dot(stack.stack()).unwrap();
        assert!(d.starts_with("digraph \"serverlesspresso-metrics\" {\n"), "{d}");
        for edge in [
            "\"OrderMetricsRule\" -> \"MetricsQueue\" [label=\"Targets\"];",
            "\"OrderMetricsRule\" -> \"MetricsDeadLetterQueue\" [label=\"Targets\"];",
            "\"MetricsQueue\" -> \"MetricsDeadLetterQueue\" [label=\"RedrivePolicy\"];",
            "\"PublishMetricsQueueMapping\" -> \"MetricsQueue\" [label=\"EventSourceArn\"];",
            "\"PublishMetricsQueueMapping\" -> \"PublishMetrics\" [label=\"FunctionName\"];",
            "\"PublishMetrics\" -> \"PublishMetricsRole\" [label=\"Role\"];",
            "\"PublishMetricsRole\" -> \"MetricsTable\" [label=\"dynamodb:PutItem\\ndynamodb:UpdateItem\"];",
            "\"MetricsQueuePolicy\" -> \"OrderMetricsRule\" [label=\"only from\"];",
        ] {
            assert!(d.contains(edge), "{edge} in\n{d}");
        }
        // Every edge joins two declared nodes.
        let nodes: std::collections::BTreeSet<&str> = d
            .lines()
            .filter(|l| l.contains("[label=") && !l.contains("->"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        for l in d.lines().filter(|l| l.contains("->")) {
            let parts: Vec<&str> = l.split('"').collect();
            assert!(nodes.contains(parts[1]) && nodes.contains(parts[3]), "{l}");
        }
    }
}
