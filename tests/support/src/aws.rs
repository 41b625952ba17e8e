//! AWS resources the integration tests create on moto, shaped from the synthesized stack.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ProvisionedThroughput, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::Value;

/// The workshop stack's template as JSON.
pub fn stack_template() -> Value {
    let stack = metrics_stack::metrics_stack(&Default::default()).expect("valid stack");
    serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap()
}

/// Creates the metrics table as the stack defines it (keys, capacity, TTL), named `name`.
pub async fn create_metrics_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let t = stack_template();
    let p = &t["Resources"]["MetricsTable"]["Properties"];
    let mut create = client.create_table().table_name(name).billing_mode(p["BillingMode"].as_str().unwrap().into());
    for a in p["AttributeDefinitions"].as_array().unwrap() {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(a["AttributeType"].as_str().unwrap()))
                .build()
                .unwrap(),
        );
    }
    for k in p["KeySchema"].as_array().unwrap() {
        create = create.key_schema(
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
                .build()
                .unwrap(),
        );
    }
    let tp = &p["ProvisionedThroughput"];
    create = create.provisioned_throughput(
        ProvisionedThroughput::builder()
            .read_capacity_units(tp["ReadCapacityUnits"].as_i64().unwrap())
            .write_capacity_units(tp["WriteCapacityUnits"].as_i64().unwrap())
            .build()
            .unwrap(),
    );
    create.send().await.expect("create table");
    let ttl = p["TimeToLiveSpecification"]["AttributeName"].as_str().unwrap();
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

/// Every counter of the table: sort key -> `val`.
pub async fn counters(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, u64> {
    deploy::local::counters(client, table).await.expect("the table can be queried")
}
