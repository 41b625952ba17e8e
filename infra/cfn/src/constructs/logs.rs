//! CloudWatch Logs: `LogGroup` with a retention from the values AWS accepts.

use std::panic::Location;

use serde::Serialize;

use super::{validate, ConstructRef, Kind, Stack};
use crate::error::Result;
use crate::template::{Expr, Resource, ResourceProperties};

/// How long a log group keeps events: only the periods CloudWatch Logs accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    OneDay = 1,
    ThreeDays = 3,
    FiveDays = 5,
    OneWeek = 7,
    TwoWeeks = 14,
    OneMonth = 30,
    TwoMonths = 60,
    ThreeMonths = 90,
    SixMonths = 180,
    OneYear = 365,
    TwoYears = 731,
    FiveYears = 1827,
    TenYears = 3653,
}

impl Retention {
    pub fn days(self) -> u32 {
        self as u32
    }
}

/// The properties of `AWS::Logs::LogGroup`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogGroupProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    log_group_name: Option<&'a str>,
    retention_in_days: u32,
}

impl ResourceProperties for LogGroupProperties<'_> {
    const TYPE: &'static str = "AWS::Logs::LogGroup";
}

/// Builder of an `AWS::Logs::LogGroup`.
#[derive(Clone, Debug)]
pub struct LogGroupBuilder {
    id: String,
    name: Option<String>,
    retention: Retention,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogGroup {
    construct: ConstructRef,
}

impl LogGroup {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <LogGroupProperties<'static> as ResourceProperties>::TYPE;

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }
}

impl LogGroup {
    /// A log group keeping events for two weeks.
    pub fn builder(id: &str) -> LogGroupBuilder {
        LogGroupBuilder { id: id.to_owned(), name: None, retention: Retention::TwoWeeks }
    }

    /// ARN of the group's streams (`arn:...:log-group:NAME:*`), what writing logs needs.
    pub fn arn(&self) -> Expr {
        self.construct.id.get_att("Arn")
    }

    pub fn reference(&self) -> Expr {
        self.construct.id.reference()
    }
}

impl LogGroupBuilder {
    /// Physical name: 1 to 512 of A-Z, a-z, 0-9, `.`, -, _, / and #.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<LogGroup> {
        self.build_at(stack, Location::caller())
    }

    /// Builds as declared at `location` (a function's log group is declared where the function is).
    pub(crate) fn build_at(self, stack: &mut Stack, location: &'static Location<'static>) -> Result<LogGroup> {
        let construct = stack.claim(&self.id, Kind::of::<LogGroupProperties>(), location)?;
        if let Some(name) = &self.name {
            validate::name(
                &construct,
                "LogGroupName",
                name,
                1..=512,
                validate::alnum_or(".-_/#"),
                "A-Z, a-z, 0-9, ., -, _, / and #",
            )?;
        }
        let props =
            LogGroupProperties { log_group_name: self.name.as_deref(), retention_in_days: self.retention.days() };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(LogGroup { construct })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::LogicalId;

    #[test]
    fn log_group_names_and_retention() {
        let mut stack = Stack::new("s", "").unwrap();
        LogGroup::builder("A")
            .name("/aws/lambda/PublishMetrics")
            .retention(Retention::OneMonth)
            .build(&mut stack)
            .unwrap();
        let t = stack.to_template().unwrap();
        assert_eq!(
            t.resources[&LogicalId::new("A").unwrap()].properties,
            json!({"LogGroupName": "/aws/lambda/PublishMetrics", "RetentionInDays": 30})
        );
        assert!(LogGroup::builder("B").name("x".repeat(512)).build(&mut stack).is_ok());
        assert!(LogGroup::builder("C").name("x".repeat(513)).build(&mut stack).is_err());
        assert!(LogGroup::builder("D").name("").build(&mut stack).is_err());
        assert!(LogGroup::builder("E").name("a b").build(&mut stack).is_err());
    }
}
