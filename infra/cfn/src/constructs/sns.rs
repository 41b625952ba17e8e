//! SNS: a `Topic` that alarms notify, and e-mail subscriptions to it (a person confirms the
//! subscription from the mail AWS sends).

use std::panic::Location;

use serde::Serialize;

use super::{validate, ConstructRef, Kind, Stack};
use crate::error::Result;
use crate::template::{Expr, LogicalId, Resource, ResourceProperties};

/// Builder of an `AWS::SNS::Topic`.
#[derive(Clone, Debug)]
pub struct TopicBuilder {
    id: String,
    name: Option<String>,
    display_name: Option<String>,
}

/// A built topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Topic {
    construct: ConstructRef,
}

impl Topic {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <TopicProperties<'static> as ResourceProperties>::TYPE;

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }
}

/// The properties of `AWS::SNS::Topic`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
}

impl ResourceProperties for TopicProperties<'_> {
    const TYPE: &'static str = "AWS::SNS::Topic";
}

/// The properties of `AWS::SNS::Subscription`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionProperties {
    topic_arn: Expr,
    protocol: &'static str,
    endpoint: Expr,
}

impl ResourceProperties for SubscriptionProperties {
    const TYPE: &'static str = "AWS::SNS::Subscription";
}

impl Topic {
    pub fn builder(id: &str) -> TopicBuilder {
        TopicBuilder { id: id.to_owned(), name: None, display_name: None }
    }

    /// The topic's ARN (`Ref`).
    pub fn arn(&self) -> Expr {
        self.construct.id.reference()
    }

    /// Subscribes the e-mail address `endpoint` (a literal or a parameter's `Ref`); with
    /// `condition`, the subscription exists only when that template condition holds (for
    /// example "an address was given").
    #[track_caller]
    pub fn subscribe_email(
        &self,
        stack: &mut Stack,
        id: &str,
        endpoint: Expr,
        condition: Option<&LogicalId>,
    ) -> Result<ConstructRef> {
        stack.owns(&self.construct)?;
        let construct = stack.claim(id, Kind::of::<SubscriptionProperties>(), Location::caller())?;
        if let Some(address) = endpoint.as_literal() {
            validate::email(&construct, "Endpoint", address)?;
        }
        let props = SubscriptionProperties { topic_arn: self.arn(), protocol: "email", endpoint };
        let mut resource = Resource::of(&props)?;
        if let Some(c) = condition {
            resource = resource.with_condition(c.as_str());
        }
        stack.add_resource(&construct, resource);
        Ok(construct)
    }
}

impl TopicBuilder {
    /// Physical name: 1 to 256 of A-Z, a-z, 0-9, - and _.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The sender name of e-mail notifications, at most 100 characters.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Topic> {
        let construct = stack.claim(&self.id, Kind::of::<TopicProperties>(), Location::caller())?;
        if let Some(name) = &self.name {
            validate::name(&construct, "TopicName", name, 1..=256, validate::alnum_or("-_"), "A-Z, a-z, 0-9, - and _")?;
        }
        if let Some(d) = &self.display_name {
            validate::max_chars(&construct, "DisplayName", d, 100)?;
        }
        let props = TopicProperties { topic_name: self.name.as_deref(), display_name: self.display_name.as_deref() };
        stack.add_resource(&construct, Resource::of(&props)?);
        Ok(Topic { construct })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::ConditionExpr;

    fn resource(stack: &Stack, id: &str) -> crate::template::Resource {
        stack.to_template().unwrap().resource(id).unwrap().clone()
    }

    #[test]
    fn topic_and_conditional_email_subscription() {
        let mut stack = Stack::new("s", "").unwrap();
        let topic = Topic::builder("Alarms").name("s-alarms").display_name("Metrics alarms").build(&mut stack).unwrap();
        let cond = stack.add_condition("HasEmail", ConditionExpr::Condition("X".into())).unwrap();
        topic.subscribe_email(&mut stack, "AlarmsEmail", Expr::lit("ops@example.com"), Some(&cond)).unwrap();
        assert_eq!(
            resource(&stack, "Alarms").properties,
            json!({"TopicName": "s-alarms", "DisplayName": "Metrics alarms"})
        );
        let sub = resource(&stack, "AlarmsEmail");
        assert_eq!(sub.resource_type, "AWS::SNS::Subscription");
        assert_eq!(sub.condition.as_deref(), Some("HasEmail"));
        assert_eq!(
            sub.properties,
            json!({"TopicArn": {"Ref": "Alarms"}, "Protocol": "email", "Endpoint": "ops@example.com"})
        );
    }

    #[test]
    fn names_and_addresses_are_checked() {
        let mut stack = Stack::new("s", "").unwrap();
        assert!(Topic::builder("A").name("x".repeat(256)).build(&mut stack).is_ok());
        assert!(Topic::builder("B").name("x".repeat(257)).build(&mut stack).is_err());
        assert!(Topic::builder("C").name("a.b").build(&mut stack).is_err());
        assert!(Topic::builder("D").display_name("d".repeat(100)).build(&mut stack).is_ok());
        assert!(Topic::builder("E").display_name("d".repeat(101)).build(&mut stack).is_err());
        let topic = Topic::builder("F").build(&mut stack).unwrap();
        for bad in ["", "ops", "ops@", "@example.com", "a b@example.com", "ops@example"] {
            let err = topic.subscribe_email(&mut stack, &format!("S{}", bad.len()), Expr::lit(bad), None);
            assert!(err.is_err(), "{bad:?}");
        }
        assert!(topic.subscribe_email(&mut stack, "Ok", Expr::lit("a.b+c@example.co.uk"), None).is_ok());
        let other = Stack::new("o", "").unwrap();
        let mut other = other;
        assert!(topic.subscribe_email(&mut other, "X", Expr::lit("ops@example.com"), None).is_err());
    }
}
