//! DynamoDB: `Table` (keys, provisioned or on-demand capacity, point-in-time recovery, TTL,
//! deletion and update-replace policies) and the grants that let functions use it.

use std::panic::Location;

use serde::Serialize;
use serde_json::json;

use super::cloudwatch::{Metric, Statistic};
use super::iam::{actions, Condition, Grant, Grantee};
use super::{validate, ConstructRef, Kind, Stack};
use crate::error::{Error, Result};
use crate::template::{Expr, Policy, Resource, ResourceProperties};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AttributeType {
    #[serde(rename = "S")]
    String,
    #[serde(rename = "N")]
    Number,
    #[serde(rename = "B")]
    Binary,
}

/// A key attribute: its name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub attribute_type: AttributeType,
}

impl Key {
    pub fn string(name: &str) -> Self {
        Key { name: name.to_owned(), attribute_type: AttributeType::String }
    }

    pub fn number(name: &str) -> Self {
        Key { name: name.to_owned(), attribute_type: AttributeType::Number }
    }
}

/// How the table pays for reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    /// Fixed capacity units per second; each at least 1.
    Provisioned {
        read: u32,
        write: u32,
    },
    OnDemand,
}

/// What happens to the data when CloudFormation deletes or replaces the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalPolicy {
    Retain,
    Delete,
}

/// Builder of an `AWS::DynamoDB::Table`. Defaults: on-demand, point-in-time recovery on,
/// data retained on delete and on replace.
#[derive(Clone, Debug)]
pub struct TableBuilder {
    id: String,
    partition_key: Key,
    sort_key: Option<Key>,
    name: Option<String>,
    billing: Billing,
    point_in_time_recovery: bool,
    deletion_protection: bool,
    ttl_attribute: Option<String>,
    removal: RemovalPolicy,
}

/// A built table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    construct: ConstructRef,
    name: Option<String>,
    partition_key: Key,
    sort_key: Option<Key>,
    billing: Billing,
    ttl_attribute: Option<String>,
}

/// The properties of `AWS::DynamoDB::Table`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    table_name: Option<&'a str>,
    attribute_definitions: Vec<serde_json::Value>,
    key_schema: Vec<serde_json::Value>,
    billing_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provisioned_throughput: Option<serde_json::Value>,
    point_in_time_recovery_specification: serde_json::Value,
    deletion_protection_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_live_specification: Option<serde_json::Value>,
}

impl ResourceProperties for TableProperties<'_> {
    const TYPE: &'static str = "AWS::DynamoDB::Table";
}

impl Table {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <TableProperties<'static> as ResourceProperties>::TYPE;

    pub fn builder(id: &str, partition_key: Key) -> TableBuilder {
        TableBuilder {
            id: id.to_owned(),
            partition_key,
            sort_key: None,
            name: None,
            billing: Billing::OnDemand,
            point_in_time_recovery: true,
            deletion_protection: true,
            ttl_attribute: None,
            removal: RemovalPolicy::Retain,
        }
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// The physical name, when one was given.
    pub fn physical_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The key schema: partition key, then the sort key if any.
    pub fn keys(&self) -> (&Key, Option<&Key>) {
        (&self.partition_key, self.sort_key.as_ref())
    }

    pub fn billing(&self) -> Billing {
        self.billing
    }

    pub fn ttl_attribute(&self) -> Option<&str> {
        self.ttl_attribute.as_deref()
    }

    /// The table name (`Ref`).
    pub fn table_name(&self) -> Expr {
        self.construct.id.reference()
    }

    pub fn arn(&self) -> Expr {
        self.construct.id.get_att("Arn")
    }

    /// Lets `grantee` write items: `PutItem` and `UpdateItem` (alone or inside
    /// `TransactWriteItems`, which needs the same actions).
    pub fn grant_write(&self, stack: &mut Stack, grantee: &impl Grantee) -> Result<Grant> {
        stack.grant(grantee.grant_role(), Some(&self.construct), self.arn(), actions::DYNAMODB_WRITE)
    }

    /// [`Table::grant_write`], only on items whose partition key matches one of
    /// `partition_keys` (`dynamodb:LeadingKeys`; `*` and `?` wildcards): a bug or a hostile
    /// event in the grantee cannot write elsewhere in the table.
    pub fn grant_write_keys(
        &self,
        stack: &mut Stack,
        grantee: &impl Grantee,
        partition_keys: &[&str],
    ) -> Result<Grant> {
        stack.grant_when(
            grantee.grant_role(),
            Some(&self.construct),
            self.arn(),
            actions::DYNAMODB_WRITE,
            vec![Condition::for_all_values_string_like("dynamodb:LeadingKeys", partition_keys)?],
        )
    }

    /// Lets `grantee` read items: `GetItem` and `Query`.
    pub fn grant_read(&self, stack: &mut Stack, grantee: &impl Grantee) -> Result<Grant> {
        stack.grant(grantee.grant_role(), Some(&self.construct), self.arn(), actions::DYNAMODB_READ)
    }

    fn metric(&self, name: &'static str, statistic: Statistic) -> Metric {
        Metric::new("AWS/DynamoDB", name, ("TableName", self.table_name()), statistic)
    }

    /// Write requests throttled (per period).
    pub fn metric_write_throttles(&self) -> Metric {
        self.metric("WriteThrottleEvents", Statistic::Sum)
    }

    /// Write capacity consumed (sum per period; divide by the period for units per second).
    pub fn metric_consumed_wcu(&self) -> Metric {
        self.metric("ConsumedWriteCapacityUnits", Statistic::Sum)
    }

    pub fn metric_provisioned_wcu(&self) -> Metric {
        self.metric("ProvisionedWriteCapacityUnits", Statistic::Average)
    }
}

fn attribute_name(construct: &ConstructRef, property: &'static str, name: &str) -> Result<()> {
    validate::name(construct, property, name, 1..=255, |_| true, "any characters")
}

impl TableBuilder {
    pub fn sort_key(mut self, key: Key) -> Self {
        self.sort_key = Some(key);
        self
    }

    /// Physical name: 3 to 255 of A-Z, a-z, 0-9, _, - and `.`.
    pub fn table_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn billing(mut self, billing: Billing) -> Self {
        self.billing = billing;
        self
    }

    /// Deletion protection (on by default): DynamoDB refuses to delete the table, whoever asks.
    pub fn deletion_protection(mut self, on: bool) -> Self {
        self.deletion_protection = on;
        self
    }

    pub fn point_in_time_recovery(mut self, on: bool) -> Self {
        self.point_in_time_recovery = on;
        self
    }

    /// Items whose `attribute` (epoch seconds) is in the past expire.
    pub fn ttl_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.ttl_attribute = Some(attribute.into());
        self
    }

    pub fn removal_policy(mut self, policy: RemovalPolicy) -> Self {
        self.removal = policy;
        self
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Table> {
        let construct = stack.claim(&self.id, Kind::of::<TableProperties>(), Location::caller())?;
        if let Some(name) = &self.name {
            validate::name(
                &construct,
                "TableName",
                name,
                3..=255,
                validate::alnum_or("_-."),
                "A-Z, a-z, 0-9, _, - and .",
            )?;
        }
        attribute_name(&construct, "KeySchema.HASH", &self.partition_key.name)?;
        let mut keys = vec![(&self.partition_key, "HASH")];
        if let Some(sort) = &self.sort_key {
            attribute_name(&construct, "KeySchema.RANGE", &sort.name)?;
            if sort.name == self.partition_key.name {
                return Err(Error::invalid(
                    &construct,
                    "KeySchema.RANGE",
                    &sort.name,
                    "must differ from the partition key",
                ));
            }
            keys.push((sort, "RANGE"));
        }
        let provisioned_throughput = match self.billing {
            Billing::OnDemand => None,
            Billing::Provisioned { read, write } => {
                validate::in_range(&construct, "ProvisionedThroughput.ReadCapacityUnits", read, 1..=u32::MAX)?;
                validate::in_range(&construct, "ProvisionedThroughput.WriteCapacityUnits", write, 1..=u32::MAX)?;
                Some(json!({ "ReadCapacityUnits": read, "WriteCapacityUnits": write }))
            }
        };
        if let Some(ttl) = &self.ttl_attribute {
            attribute_name(&construct, "TimeToLiveSpecification.AttributeName", ttl)?;
        }
        let props = TableProperties {
            table_name: self.name.as_deref(),
            attribute_definitions: keys
                .iter()
                .map(|(k, _)| json!({ "AttributeName": k.name, "AttributeType": k.attribute_type }))
                .collect(),
            key_schema: keys.iter().map(|(k, kind)| json!({ "AttributeName": k.name, "KeyType": kind })).collect(),
            billing_mode: if provisioned_throughput.is_some() { "PROVISIONED" } else { "PAY_PER_REQUEST" },
            provisioned_throughput,
            point_in_time_recovery_specification: json!({ "PointInTimeRecoveryEnabled": self.point_in_time_recovery }),
            deletion_protection_enabled: self.deletion_protection,
            time_to_live_specification: self
                .ttl_attribute
                .as_ref()
                .map(|a| json!({ "AttributeName": a, "Enabled": true })),
        };
        let policy = match self.removal {
            RemovalPolicy::Retain => Policy::Retain,
            RemovalPolicy::Delete => Policy::Delete,
        };
        let resource = Resource::of(&props)?.with_policies(policy, policy);
        stack.add_resource(&construct, resource);
        Ok(Table {
            construct,
            name: self.name,
            partition_key: self.partition_key,
            sort_key: self.sort_key,
            billing: self.billing,
            ttl_attribute: self.ttl_attribute,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::LogicalId;

    fn build(f: impl FnOnce(TableBuilder) -> TableBuilder) -> Result<Stack> {
        let mut stack = Stack::new("s", "").unwrap();
        f(Table::builder("T", Key::string("PK"))).build(&mut stack)?;
        Ok(stack)
    }

    fn resource(stack: &Stack) -> Resource {
        stack.to_template().unwrap().resources[&LogicalId::new("T").unwrap()].clone()
    }

    #[test]
    fn provisioned_table_with_everything() {
        let stack = build(|b| {
            b.sort_key(Key::string("SK"))
                .table_name("serverlesspresso-metrics-table")
                .billing(Billing::Provisioned { read: 5, write: 5 })
                .ttl_attribute("ttl")
        })
        .unwrap();
        let r = resource(&stack);
        assert_eq!(r.deletion_policy, Some(Policy::Retain));
        assert_eq!(r.update_replace_policy, Some(Policy::Retain));
        assert_eq!(
            r.properties,
            json!({
                "TableName": "serverlesspresso-metrics-table",
                "AttributeDefinitions": [
                    {"AttributeName": "PK", "AttributeType": "S"},
                    {"AttributeName": "SK", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                "DeletionProtectionEnabled": true,
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": true},
            })
        );
    }

    #[test]
    fn on_demand_and_delete() {
        let stack =
            build(|b| b.removal_policy(RemovalPolicy::Delete).point_in_time_recovery(false).deletion_protection(false))
                .unwrap();
        let r = resource(&stack);
        assert_eq!(r.properties["BillingMode"], "PAY_PER_REQUEST");
        assert!(r.properties.get("ProvisionedThroughput").is_none());
        assert_eq!(r.deletion_policy, Some(Policy::Delete));
        assert_eq!(r.properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], false);
        assert_eq!(r.properties["DeletionProtectionEnabled"], false);
    }

    #[test]
    fn capacity_is_at_least_one() {
        assert!(build(|b| b.billing(Billing::Provisioned { read: 1, write: 1 })).is_ok());
        let err = build(|b| b.billing(Billing::Provisioned { read: 0, write: 1 })).unwrap_err().to_string();
        assert!(
            err.starts_with("dynamodb::Table `T`: ProvisionedThroughput.ReadCapacityUnits = 0 is invalid"),
            "{err}"
        );
        let err = build(|b| b.billing(Billing::Provisioned { read: 1, write: 0 })).unwrap_err().to_string();
        assert!(err.contains("WriteCapacityUnits = 0"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert!(build(|b| b.table_name("abc")).is_ok());
        assert!(build(|b| b.table_name("a".repeat(255))).is_ok());
        assert!(build(|b| b.table_name("ab")).is_err());
        assert!(build(|b| b.table_name("a".repeat(256))).is_err());
        assert!(build(|b| b.table_name("a b c")).is_err());
        assert!(build(|b| b.sort_key(Key::string(""))).is_err());
        assert!(build(|b| b.sort_key(Key::string(&"k".repeat(256)))).is_err());
        assert!(build(|b| b.ttl_attribute("")).is_err());
        let err = build(|b| b.sort_key(Key::string("PK"))).unwrap_err().to_string();
        assert!(err.contains("must differ from the partition key"), "{err}");
        let number = build(|b| b.sort_key(Key::number("N"))).unwrap();
        assert_eq!(resource(&number).properties["AttributeDefinitions"][1]["AttributeType"], "N");
    }
}
