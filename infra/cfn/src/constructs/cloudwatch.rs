//! CloudWatch: metrics (produced by the other constructs' handles), alarms and dashboards.

use std::panic::Location;

use serde::Serialize;
use serde_json::json;

use super::sns::Topic;
use super::{validate, ConstructRef, Kind, Stack};
use crate::error::{Error, Result};
use crate::template::{Expr, Resource, ResourceProperties};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Statistic {
    Average,
    Maximum,
    Minimum,
    Sum,
    SampleCount,
}

/// One CloudWatch metric with its dimensions, statistic and period.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub namespace: &'static str,
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, Expr)>,
    pub statistic: Statistic,
    pub period_secs: u32,
}

impl Metric {
    pub fn new(
        namespace: &'static str,
        name: &'static str,
        dimension: (&'static str, Expr),
        statistic: Statistic,
    ) -> Self {
        Metric { namespace, name, dimensions: vec![dimension], statistic, period_secs: 60 }
    }

    pub fn with_statistic(mut self, statistic: Statistic) -> Self {
        self.statistic = statistic;
        self
    }

    pub fn with_period(mut self, secs: u32) -> Self {
        self.period_secs = secs;
        self
    }
}

/// CloudWatch accepts periods of 10, 30 or a multiple of 60 seconds.
fn check_period(construct: &impl std::fmt::Display, secs: u32) -> Result<()> {
    if secs == 10 || secs == 30 || (secs >= 60 && secs.is_multiple_of(60)) {
        Ok(())
    } else {
        Err(Error::invalid(construct, "Period", secs, "must be 10, 30 or a multiple of 60 seconds"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    Breaching,
    NotBreaching,
    Ignore,
    Missing,
}

/// Builder of an `AWS::CloudWatch::Alarm` on one metric.
#[derive(Clone, Debug)]
pub struct AlarmBuilder {
    id: String,
    metric: Metric,
    name: Option<String>,
    description: Option<String>,
    threshold: f64,
    comparison: Comparison,
    evaluation_periods: u32,
    datapoints_to_alarm: Option<u32>,
    treat_missing_data: TreatMissingData,
    notify: Vec<Expr>,
}

/// A built alarm.
#[derive(Clone, Debug)]
pub struct Alarm {
    construct: ConstructRef,
    metric: Metric,
    threshold: f64,
}

impl Alarm {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <AlarmProperties<'static> as ResourceProperties>::TYPE;

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    pub fn metric(&self) -> &Metric {
        &self.metric
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

impl Alarm {
    /// An alarm when `metric` is at or above `threshold` for one period; missing data is fine.
    pub fn builder(id: &str, metric: Metric, threshold: f64) -> AlarmBuilder {
        AlarmBuilder {
            id: id.to_owned(),
            metric,
            name: None,
            description: None,
            threshold,
            comparison: Comparison::GreaterThanOrEqualToThreshold,
            evaluation_periods: 1,
            datapoints_to_alarm: None,
            treat_missing_data: TreatMissingData::NotBreaching,
            notify: Vec::new(),
        }
    }
}

/// The properties of `AWS::CloudWatch::Alarm`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_description: Option<&'a str>,
    namespace: &'a str,
    metric_name: &'a str,
    dimensions: Vec<serde_json::Value>,
    statistic: Statistic,
    period: u32,
    evaluation_periods: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    datapoints_to_alarm: Option<u32>,
    threshold: f64,
    comparison_operator: Comparison,
    treat_missing_data: TreatMissingData,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    alarm_actions: &'a [Expr],
    #[serde(rename = "OKActions", skip_serializing_if = "<[_]>::is_empty")]
    ok_actions: &'a [Expr],
}

impl ResourceProperties for AlarmProperties<'_> {
    const TYPE: &'static str = "AWS::CloudWatch::Alarm";
}

impl AlarmBuilder {
    /// Physical name, 1 to 255 characters.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn comparison(mut self, comparison: Comparison) -> Self {
        self.comparison = comparison;
        self
    }

    /// Alarm after `datapoints` breaching periods out of the last `periods`.
    pub fn evaluation(mut self, periods: u32, datapoints: u32) -> Self {
        self.evaluation_periods = periods;
        self.datapoints_to_alarm = Some(datapoints);
        self
    }

    pub fn treat_missing_data(mut self, treat: TreatMissingData) -> Self {
        self.treat_missing_data = treat;
        self
    }

    /// Notifies `topic` when the alarm goes to ALARM and when it is OK again.
    pub fn notify(mut self, topic: &Topic) -> Self {
        self.notify.push(topic.arn());
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Alarm> {
        let construct = stack.claim(&self.id, Kind::of::<AlarmProperties>(), Location::caller())?;
        if let Some(name) = &self.name {
            validate::name(&construct, "AlarmName", name, 1..=255, |c| !c.is_control(), "printable characters")?;
        }
        if let Some(d) = &self.description {
            validate::max_chars(&construct, "AlarmDescription", d, 1024)?;
        }
        check_period(&construct, self.metric.period_secs)?;
        validate::in_range(&construct, "EvaluationPeriods", self.evaluation_periods, 1..=86_400)?;
        let span = u64::from(self.evaluation_periods) * u64::from(self.metric.period_secs);
        if span > 86_400 {
            return Err(Error::invalid(
                &construct,
                "EvaluationPeriods",
                self.evaluation_periods,
                format!("times the period ({} s) must be at most one day (86400 s)", self.metric.period_secs),
            ));
        }
        if let Some(n) = self.datapoints_to_alarm {
            validate::in_range(&construct, "DatapointsToAlarm", n, 1..=self.evaluation_periods)?;
        }
        // CloudWatch takes at most five actions per state.
        if self.notify.len() > 5 {
            return Err(Error::invalid(&construct, "AlarmActions", self.notify.len(), "must be at most 5 actions"));
        }
        if !self.threshold.is_finite() {
            return Err(Error::invalid(&construct, "Threshold", self.threshold, "must be a finite number"));
        }
        let props = AlarmProperties {
            alarm_name: self.name.as_deref(),
            alarm_description: self.description.as_deref(),
            namespace: self.metric.namespace,
            metric_name: self.metric.name,
            dimensions: self.metric.dimensions.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect(),
            statistic: self.metric.statistic,
            period: self.metric.period_secs,
            evaluation_periods: self.evaluation_periods,
            datapoints_to_alarm: self.datapoints_to_alarm,
            threshold: self.threshold,
            comparison_operator: self.comparison,
            treat_missing_data: self.treat_missing_data,
            alarm_actions: &self.notify,
            ok_actions: &self.notify,
        };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(Alarm { construct, metric: self.metric, threshold: self.threshold })
    }
}

/// One line of a graph: a metric, or metric math over other lines' ids.
#[derive(Clone, Debug)]
pub enum Line {
    Metric { metric: Metric, label: String, id: Option<String>, visible: bool },
    Expression { id: String, expression: String, label: String },
}

impl Line {
    pub fn metric(metric: Metric, label: &str) -> Self {
        Line::Metric { metric, label: label.to_owned(), id: None, visible: true }
    }

    /// A metric only used by an expression: named `id`, not drawn.
    pub fn hidden(metric: Metric, id: &str) -> Self {
        Line::Metric { metric, label: id.to_owned(), id: Some(id.to_owned()), visible: false }
    }

    pub fn expression(id: &str, expression: &str, label: &str) -> Self {
        Line::Expression { id: id.to_owned(), expression: expression.to_owned(), label: label.to_owned() }
    }
}

/// A time-series graph on a dashboard.
#[derive(Clone, Debug)]
pub struct GraphWidget {
    pub title: String,
    pub lines: Vec<Line>,
}

/// Builder of an `AWS::CloudWatch::Dashboard` of graphs, two per row.
#[derive(Clone, Debug)]
pub struct DashboardBuilder {
    id: String,
    name: Option<String>,
    widgets: Vec<GraphWidget>,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    construct: ConstructRef,
    widgets: Vec<GraphWidget>,
}

impl Dashboard {
    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// Its graphs, in order: what a local run draws from its own series.
    pub fn widgets(&self) -> &[GraphWidget] {
        &self.widgets
    }
}

impl Dashboard {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <DashboardProperties<'static> as ResourceProperties>::TYPE;

    pub fn builder(id: &str) -> DashboardBuilder {
        DashboardBuilder { id: id.to_owned(), name: None, widgets: Vec::new() }
    }
}

/// A string inside the dashboard body, which CloudFormation reads through `Fn::Sub`.
fn sub_string(construct: &ConstructRef, expr: &Expr) -> Result<String> {
    expr.as_sub_fragment().ok_or_else(|| {
        Error::invalid(
            construct,
            "DashboardBody",
            serde_json::to_string(expr).unwrap_or_default(),
            "a dimension must be a literal, Ref, GetAtt or Sub",
        )
    })
}

/// The dashboard body (CloudWatch's "Dashboard Body Structure"), serialized compactly; its
/// strings may hold `${...}` placeholders that `Fn::Sub` fills in.
#[derive(Serialize)]
struct Body<'a> {
    widgets: Vec<Widget<'a>>,
}

#[derive(Serialize)]
struct Widget<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    x: usize,
    y: usize,
    width: u32,
    height: u32,
    properties: WidgetProperties<'a>,
}

#[derive(Serialize)]
struct WidgetProperties<'a> {
    title: &'a str,
    view: &'static str,
    region: &'static str,
    period: u32,
    metrics: Vec<MetricLine<'a>>,
}

/// One entry of `metrics`: `[namespace, name, dimension name, value, ..., options]`, or
/// `[{expression options}]`.
enum MetricLine<'a> {
    Metric { namespace: &'a str, name: &'a str, dimensions: Vec<(&'a str, String)>, options: MetricOptions<'a> },
    Expression(ExpressionOptions<'a>),
}

#[derive(Serialize)]
struct MetricOptions<'a> {
    stat: Statistic,
    label: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    /// Only `false` is written: drawn is the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    visible: Option<bool>,
}

#[derive(Serialize)]
struct ExpressionOptions<'a> {
    expression: &'a str,
    label: &'a str,
    id: &'a str,
}

impl Serialize for MetricLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        match self {
            MetricLine::Metric { namespace, name, dimensions, options } => {
                seq.serialize_element(namespace)?;
                seq.serialize_element(name)?;
                for (dimension, value) in dimensions {
                    seq.serialize_element(dimension)?;
                    seq.serialize_element(value)?;
                }
                seq.serialize_element(options)?;
            }
            MetricLine::Expression(options) => seq.serialize_element(options)?,
        }
        seq.end()
    }
}

/// The properties of `AWS::CloudWatch::Dashboard`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DashboardProperties<'a> {
    dashboard_body: Expr,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_name: Option<&'a str>,
}

impl ResourceProperties for DashboardProperties<'_> {
    const TYPE: &'static str = "AWS::CloudWatch::Dashboard";
}

impl DashboardBuilder {
    /// Physical name: 1 to 255 of A-Z, a-z, 0-9, - and _.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn graph(mut self, widget: GraphWidget) -> Self {
        self.widgets.push(widget);
        self
    }

    fn body(&self, construct: &ConstructRef) -> Result<String> {
        let mut widgets = Vec::new();
        for (i, w) in self.widgets.iter().enumerate() {
            let mut metrics = Vec::new();
            let mut period = 60;
            for line in &w.lines {
                metrics.push(match line {
                    Line::Metric { metric, label, id, visible } => {
                        check_period(construct, metric.period_secs)?;
                        period = metric.period_secs;
                        let dimensions = metric
                            .dimensions
                            .iter()
                            .map(|(name, value)| Ok((*name, sub_string(construct, value)?)))
                            .collect::<Result<_>>()?;
                        MetricLine::Metric {
                            namespace: metric.namespace,
                            name: metric.name,
                            dimensions,
                            options: MetricOptions {
                                stat: metric.statistic,
                                label,
                                id: id.as_deref(),
                                visible: (!visible).then_some(false),
                            },
                        }
                    }
                    Line::Expression { id, expression, label } => {
                        MetricLine::Expression(ExpressionOptions { expression, label, id })
                    }
                });
            }
            widgets.push(Widget {
                kind: "metric",
                x: (i % 2) * 12,
                y: (i / 2) * 6,
                width: 12,
                height: 6,
                properties: WidgetProperties {
                    title: &w.title,
                    view: "timeSeries",
                    region: "${AWS::Region}",
                    period,
                    metrics,
                },
            });
        }
        serde_json::to_string(&Body { widgets }).map_err(|e| Error::Serialize(e.to_string()))
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Dashboard> {
        let construct = stack.claim(&self.id, Kind::of::<DashboardProperties>(), Location::caller())?;
        if let Some(name) = &self.name {
            validate::name(
                &construct,
                "DashboardName",
                name,
                1..=255,
                validate::alnum_or("-_"),
                "A-Z, a-z, 0-9, - and _",
            )?;
        }
        if self.widgets.is_empty() {
            return Err(Error::invalid(&construct, "DashboardBody", "no widgets", "add at least one graph"));
        }
        let props = DashboardProperties {
            dashboard_body: Expr::Sub(self.body(&construct)?),
            dashboard_name: self.name.as_deref(),
        };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(Dashboard { construct, widgets: self.widgets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::LogicalId;

    fn metric() -> Metric {
        Metric::new("AWS/SQS", "NumberOfMessagesSent", ("QueueName", Expr::lit("q")), Statistic::Sum)
    }

    fn alarm_props(stack: &Stack, id: &str) -> serde_json::Value {
        stack.to_template().unwrap().resources[&LogicalId::new(id).unwrap()].properties.clone()
    }

    #[test]
    fn alarm_renders_its_metric() {
        let mut stack = Stack::new("s", "").unwrap();
        Alarm::builder("A", metric(), 1.0).name("a").description("d").evaluation(3, 2).build(&mut stack).unwrap();
        let p = alarm_props(&stack, "A");
        assert_eq!(p["MetricName"], "NumberOfMessagesSent");
        assert_eq!(p["Dimensions"], json!([{"Name": "QueueName", "Value": "q"}]));
        assert_eq!(p["EvaluationPeriods"], 3);
        assert_eq!(p["DatapointsToAlarm"], 2);
        assert_eq!(p["TreatMissingData"], "notBreaching");
        assert_eq!(p["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    }

    #[test]
    fn alarm_notifies_a_topic_on_alarm_and_ok() {
        let mut stack = Stack::new("s", "").unwrap();
        let topic = Topic::builder("T").build(&mut stack).unwrap();
        Alarm::builder("A", metric(), 1.0).notify(&topic).build(&mut stack).unwrap();
        let p = alarm_props(&stack, "A");
        assert_eq!(p["AlarmActions"], json!([{"Ref": "T"}]));
        assert_eq!(p["OKActions"], json!([{"Ref": "T"}]));
        Alarm::builder("B", metric(), 1.0).build(&mut stack).unwrap();
        assert!(alarm_props(&stack, "B").get("AlarmActions").is_none());
        let five = (0..5).fold(Alarm::builder("C", metric(), 1.0), |b, _| b.notify(&topic));
        assert!(five.build(&mut stack).is_ok());
        let six = (0..6).fold(Alarm::builder("D", metric(), 1.0), |b, _| b.notify(&topic));
        let err = six.build(&mut stack).unwrap_err().to_string();
        assert!(err.contains("AlarmActions = 6"), "{err}");
    }

    #[test]
    fn alarm_periods_follow_cloudwatch_rules() {
        for ok in [10, 30, 60, 300, 86_400] {
            let mut stack = Stack::new("s", "").unwrap();
            assert!(Alarm::builder("A", metric().with_period(ok), 1.0).build(&mut stack).is_ok(), "{ok}");
        }
        for bad in [0, 9, 20, 59, 61, 90] {
            let mut stack = Stack::new("s", "").unwrap();
            let err = Alarm::builder("A", metric().with_period(bad), 1.0).build(&mut stack).unwrap_err();
            assert!(err.to_string().contains(&format!("Period = {bad} is invalid")), "{err}");
        }
    }

    #[test]
    fn alarm_evaluation_limits() {
        let mut stack = Stack::new("s", "").unwrap();
        assert!(Alarm::builder("A", metric(), 1.0).evaluation(1440, 1440).build(&mut stack).is_ok());
        let err = Alarm::builder("B", metric(), 1.0).evaluation(1441, 1).build(&mut stack).unwrap_err();
        assert!(err.to_string().contains("at most one day"), "{err}");
        let err = Alarm::builder("C", metric(), 1.0).evaluation(0, 0).build(&mut stack).unwrap_err();
        assert!(err.to_string().contains("EvaluationPeriods = 0"), "{err}");
        let err = Alarm::builder("D", metric(), 1.0).evaluation(2, 3).build(&mut stack).unwrap_err();
        assert!(err.to_string().contains("DatapointsToAlarm = 3"), "{err}");
        let err = Alarm::builder("E", metric(), f64::NAN).build(&mut stack).unwrap_err();
        assert!(err.to_string().contains("Threshold"), "{err}");
        assert!(Alarm::builder("F", metric(), 1.0).name("x".repeat(255)).build(&mut stack).is_ok());
        assert!(Alarm::builder("G", metric(), 1.0).name("x".repeat(256)).build(&mut stack).is_err());
        assert!(Alarm::builder("H", metric(), 1.0).name("").build(&mut stack).is_err());
        assert!(Alarm::builder("I", metric(), 1.0).description("d".repeat(1024)).build(&mut stack).is_ok());
        assert!(Alarm::builder("J", metric(), 1.0).description("d".repeat(1025)).build(&mut stack).is_err());
    }

    #[test]
    fn dashboard_body_is_json_once_substituted() {
        let mut stack = Stack::new("s", "").unwrap();
        let q = LogicalId::new("Queue").unwrap();
        let m = Metric::new(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            ("QueueName", q.get_att("QueueName")),
            Statistic::Maximum,
        );
        Dashboard::builder("D")
            .name("dash")
            .graph(GraphWidget {
                title: "Age \"of\" oldest".into(),
                lines: vec![
                    Line::metric(m.clone(), "age"),
                    Line::hidden(m, "m1"),
                    Line::expression("e1", "m1/60", "per s"),
                ],
            })
            .graph(GraphWidget { title: "Two".into(), lines: vec![Line::metric(metric(), "sent")] })
            .build(&mut stack)
            .unwrap();
        let p = alarm_props(&stack, "D");
        assert_eq!(p["DashboardName"], "dash");
        let body = p["DashboardBody"]["Fn::Sub"].as_str().unwrap();
        let filled = body.replace("${Queue.QueueName}", "metrics-queue").replace("${AWS::Region}", "us-east-1");
        let v: serde_json::Value = serde_json::from_str(&filled).unwrap();
        let w = &v["widgets"];
        assert_eq!(w[0]["properties"]["title"], "Age \"of\" oldest");
        assert_eq!(
            w[0]["properties"]["metrics"][0],
            json!(["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "metrics-queue", {"stat": "Maximum", "label": "age"}])
        );
        assert_eq!(
            w[0]["properties"]["metrics"][1][4],
            json!({"stat": "Maximum", "label": "m1", "id": "m1", "visible": false})
        );
        assert_eq!(w[0]["properties"]["metrics"][2], json!([{"expression": "m1/60", "label": "per s", "id": "e1"}]));
        assert_eq!((w[1]["x"].as_u64(), w[1]["y"].as_u64()), (Some(12), Some(0)));
    }

    #[test]
    fn dashboard_needs_widgets_and_a_valid_name() {
        let mut stack = Stack::new("s", "").unwrap();
        assert!(Dashboard::builder("A").build(&mut stack).is_err());
        let one = || GraphWidget { title: "t".into(), lines: vec![Line::metric(metric(), "l")] };
        assert!(Dashboard::builder("B").name("a b").graph(one()).build(&mut stack).is_err());
        assert!(Dashboard::builder("C").name("x".repeat(256)).graph(one()).build(&mut stack).is_err());
        assert!(Dashboard::builder("D").name("x".repeat(255)).graph(one()).build(&mut stack).is_ok());
        let joined = Metric::new("AWS/SQS", "X", ("QueueName", Expr::Join(",".into(), vec![])), Statistic::Sum);
        let err = Dashboard::builder("E")
            .graph(GraphWidget { title: "t".into(), lines: vec![Line::metric(joined, "l")] })
            .build(&mut stack);
        assert!(err.is_err());
    }
}
