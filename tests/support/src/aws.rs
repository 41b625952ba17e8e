//! AWS resources the integration tests create on moto, shaped from the synthesized stack.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput, ScalarAttributeType,
    TimeToLiveSpecification,
};

/// The workshop's stack, as typed handles.
pub fn workshop_stack() -> metrics_stack::MetricsStack {
    metrics_stack::metrics_stack(&Default::default()).expect("valid stack")
}

/// Creates the metrics table as the stack defines it (keys, capacity, TTL), named `name`.
pub async fn create_metrics_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    use cfn::constructs::dynamodb::{AttributeType, Billing, Key};
    let stack = workshop_stack();
    let table = stack.table();
    let (partition, sort) = table.keys();
    let mut create = client.create_table().table_name(name);
    for (key, kind) in [(Some(partition), KeyType::Hash), (sort, KeyType::Range)] {
        let Some(Key { name, attribute_type }) = key else { continue };
        let scalar = match attribute_type {
            AttributeType::String => ScalarAttributeType::S,
            AttributeType::Number => ScalarAttributeType::N,
            AttributeType::Binary => ScalarAttributeType::B,
        };
        create = create
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(name).attribute_type(scalar).build().unwrap(),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap());
    }
    create = match table.billing() {
        Billing::Provisioned { read, write } => create.billing_mode(BillingMode::Provisioned).provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(i64::from(read))
                .write_capacity_units(i64::from(write))
                .build()
                .unwrap(),
        ),
        Billing::OnDemand => create.billing_mode(BillingMode::PayPerRequest),
    };
    create.send().await.expect("create table");
    if let Some(ttl) = table.ttl_attribute() {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(ttl).enabled(true).build().unwrap(),
            )
            .send()
            .await
            .expect("enable TTL");
    }
}

/// Every counter of the table: sort key -> `val`.
pub async fn counters(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, u64> {
    report::counters(client, table).await.expect("the table can be queried")
}
