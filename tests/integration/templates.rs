//! The synthesized templates: snapshots, every property the metrics stack promises (checked by
//! path), least-privilege IAM, determinism, and a committed `synth-out/` that is current.

use test_support as support;

use cfn::constructs::dynamodb::Billing;
use metrics_stack::{metrics_stack, BusProps, MetricsStackProps};
use serde_json::{json, Value};

fn template(props: &MetricsStackProps) -> Value {
    let stack = metrics_stack(props).expect("valid stack");
    serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap()
}

fn workshop() -> Value {
    template(&MetricsStackProps::default())
}

fn props<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(r.is_object(), "resource {id} is missing");
    &r["Properties"]
}

fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == ty).collect()
}

/// The statements of the inline policy of role `role`.
fn role_statements<'a>(t: &'a Value, role: &str) -> &'a Vec<Value> {
    let policies = props(t, role)["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1);
    policies[0]["PolicyDocument"]["Statement"].as_array().unwrap()
}

fn actions(statement: &Value) -> Vec<&str> {
    statement["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

#[test]
fn snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for a in support::templates().iter().filter(|a| a.file_name.ends_with(".yaml")) {
            insta::assert_snapshot!(a.file_name.clone(), &a.contents);
        }
    });
}

#[test]
fn rule_routes_the_three_order_events_to_the_queue() {
    let t = workshop();
    let rule = props(&t, "OrderMetricsRule");
    assert_eq!(rule["Name"], "OrderMetrics-DynamoDB");
    assert_eq!(rule["EventBusName"], "Serverlesspresso");
    assert_eq!(rule["State"], "ENABLED");
    assert_eq!(
        rule["EventPattern"],
        json!({
            "source": ["awsserverlessda.serverlesspresso"],
            "detail-type": ["OrderManager.WaitingCompletion", "OrderManager.OrderCompleted", "OrderManager.OrderCancelled"],
        })
    );
    let targets = rule["Targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"], json!({"Fn::GetAtt": ["MetricsQueue", "Arn"]}));
    assert_eq!(targets[0]["DeadLetterConfig"]["Arn"], json!({"Fn::GetAtt": ["MetricsDeadLetterQueue", "Arn"]}));
    assert_eq!(targets[0]["RetryPolicy"], json!({"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}));
}

#[test]
fn queue_has_sse_long_polling_and_a_redrive_policy() {
    let t = workshop();
    let q = props(&t, "MetricsQueue");
    assert_eq!(q["QueueName"], "MetricsQueue");
    assert_eq!(q["VisibilityTimeout"], 210, "6 x 30 s timeout + 30 s window");
    assert_eq!(q["MessageRetentionPeriod"], 345_600);
    assert_eq!(q["ReceiveMessageWaitTimeSeconds"], 20);
    assert_eq!(q["SqsManagedSseEnabled"], true);
    assert_eq!(
        q["RedrivePolicy"],
        json!({"deadLetterTargetArn": {"Fn::GetAtt": ["MetricsDeadLetterQueue", "Arn"]}, "maxReceiveCount": 10})
    );
    let dlq = props(&t, "MetricsDeadLetterQueue");
    assert_eq!(dlq["MessageRetentionPeriod"], 1_209_600);
    assert_eq!(dlq["SqsManagedSseEnabled"], true);
    assert!(dlq.get("RedrivePolicy").is_none());
}

#[test]
fn queue_policies_admit_only_eventbridge_from_this_rule() {
    let t = workshop();
    let policies =
        resources_of_type(&t, <cfn::constructs::iam::QueuePolicyProperties as cfn::template::ResourceProperties>::TYPE);
    assert_eq!(policies.len(), 2, "the queue and the rule's dead-letter queue");
    for (queue, policy) in
        [("MetricsQueue", "MetricsQueuePolicy"), ("MetricsDeadLetterQueue", "MetricsDeadLetterQueuePolicy")]
    {
        let p = props(&t, policy);
        assert_eq!(p["Queues"], json!([{"Ref": queue}]));
        assert_eq!(
            p["PolicyDocument"]["Statement"],
            json!([{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["sqs:SendMessage"],
                "Resource": [{"Fn::GetAtt": [queue, "Arn"]}],
                "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["OrderMetricsRule", "Arn"]}}},
            }])
        );
    }
}

#[test]
fn table_is_provisioned_retained_and_recoverable() {
    let t = workshop();
    let table = &t["Resources"]["MetricsTable"];
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    let p = &table["Properties"];
    assert_eq!(p["TableName"], "serverlesspresso-metrics-table");
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}])
    );
    assert_eq!(
        p["AttributeDefinitions"],
        json!([{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}])
    );
    assert_eq!(p["BillingMode"], "PROVISIONED");
    assert_eq!(p["ProvisionedThroughput"], json!({"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}));
    assert_eq!(p["PointInTimeRecoverySpecification"], json!({"PointInTimeRecoveryEnabled": true}));
    assert_eq!(p["DeletionProtectionEnabled"], true, "DynamoDB refuses to delete the table, whoever asks");
    assert_eq!(p["TimeToLiveSpecification"], json!({"AttributeName": "ttl", "Enabled": true}));
}

#[test]
fn publish_metrics_is_throttled_to_one_and_batches() {
    let t = workshop();
    let f = props(&t, "PublishMetrics");
    assert_eq!(f["FunctionName"], "PublishMetrics");
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Architectures"], json!(["arm64"]));
    assert_eq!(f["ReservedConcurrentExecutions"], 1);
    assert_eq!(f["Timeout"], 30);
    // Its share of the table's 5 WCU: the one instance reserved concurrency allows gets all.
    assert_eq!(
        f["Environment"]["Variables"],
        json!({"TABLE_NAME": {"Ref": "MetricsTable"}, "WRITE_BUDGET_WCU_PER_SECOND": "5"})
    );
    assert_eq!(f["Code"], json!({"S3Bucket": {"Ref": "AssetBucket"}, "S3Key": {"Ref": "PublishMetricsCodeKey"}}));
    assert_eq!(f["LoggingConfig"]["LogGroup"], json!({"Ref": "PublishMetricsLogGroup"}));
    let m = props(&t, "PublishMetricsQueueMapping");
    assert_eq!(m["EventSourceArn"], json!({"Fn::GetAtt": ["MetricsQueue", "Arn"]}));
    assert_eq!(m["FunctionName"], json!({"Ref": "PublishMetrics"}));
    assert_eq!(m["BatchSize"], 10);
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 30);
    assert_eq!(m["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
    assert_eq!(m["Enabled"], true);
}

#[test]
fn events_load_test_may_only_put_events_on_the_bus() {
    let t = workshop();
    let f = props(&t, "EventsLoadTest");
    assert_eq!(f["FunctionName"], "EventsLoadTest");
    assert_eq!(f["Environment"]["Variables"], json!({"EVENT_BUS_NAME": "Serverlesspresso"}));
    // One flood at a time.
    assert_eq!(f["ReservedConcurrentExecutions"], 1);
    let statements = role_statements(&t, "EventsLoadTestRole");
    assert_eq!(statements.len(), 2);
    assert_eq!(actions(&statements[1]), ["events:PutEvents"]);
    assert_eq!(
        statements[1]["Resource"],
        json!([{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/Serverlesspresso"}])
    );
    // Only the order events the rule routes, from their source: it cannot pose as another
    // producer on the shared bus.
    assert_eq!(
        statements[1]["Condition"],
        json!({"StringEquals": {
            "events:source": [order_events::SOURCE],
            "events:detail-type": ["OrderManager.OrderCancelled", "OrderManager.OrderCompleted", "OrderManager.WaitingCompletion"],
        }})
    );
    let pattern = &props(&t, "OrderMetricsRule")["EventPattern"];
    assert_eq!(statements[1]["Condition"]["StringEquals"]["events:source"], pattern["source"]);
    let mut routed: Vec<&str> = pattern["detail-type"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    routed.sort_unstable();
    let granted = &statements[1]["Condition"]["StringEquals"]["events:detail-type"];
    assert_eq!(granted, &json!(routed), "the grant admits what the rule routes");
}

#[test]
fn publish_metrics_writes_only_the_partition_keys_it_uses() {
    let t = workshop();
    let write = &role_statements(&t, "PublishMetricsRole")[1];
    assert_eq!(actions(write), ["dynamodb:PutItem", "dynamodb:UpdateItem"]);
    assert_eq!(
        write["Condition"],
        json!({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["Aggregate", "Dedupe#*"]}})
    );
}

#[test]
fn the_dead_letter_queue_takes_only_metrics_queues_failures() {
    let t = workshop();
    assert_eq!(
        props(&t, "MetricsDeadLetterQueue")["RedriveAllowPolicy"],
        json!({
            "redrivePermission": "byQueue",
            "sourceQueueArns": [{"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:MetricsQueue"}],
        })
    );
    assert_eq!(props(&t, "MetricsQueue")["QueueName"], "MetricsQueue");
}

#[test]
fn every_grant_lists_exact_actions_on_the_resource() {
    let t = workshop();
    let publish = role_statements(&t, "PublishMetricsRole");
    let got: Vec<(Vec<&str>, &Value)> = publish.iter().map(|s| (actions(s), &s["Resource"])).collect();
    assert_eq!(
        got,
        vec![
            (
                vec!["logs:CreateLogStream", "logs:PutLogEvents"],
                &json!([{"Fn::GetAtt": ["PublishMetricsLogGroup", "Arn"]}])
            ),
            (vec!["dynamodb:PutItem", "dynamodb:UpdateItem"], &json!([{"Fn::GetAtt": ["MetricsTable", "Arn"]}])),
            (
                vec!["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                &json!([{"Fn::GetAtt": ["MetricsQueue", "Arn"]}])
            ),
        ]
    );
    let load = role_statements(&t, "EventsLoadTestRole");
    assert_eq!(actions(&load[0]), ["logs:CreateLogStream", "logs:PutLogEvents"]);
    assert_eq!(load[0]["Resource"], json!([{"Fn::GetAtt": ["EventsLoadTestLogGroup", "Arn"]}]));
    for (_, role) in
        resources_of_type(&t, <cfn::constructs::iam::RoleProperties as cfn::template::ResourceProperties>::TYPE)
    {
        assert_eq!(
            role["Properties"]["AssumeRolePolicyDocument"]["Statement"],
            json!([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": ["sts:AssumeRole"]}])
        );
        assert!(role["Properties"].get("ManagedPolicyArns").is_none());
    }
}

/// Every `Action` and `Resource` value anywhere in the template, with the key it was under.
fn iam_values<'a>(v: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "Action" || k == "Resource" {
                    out.push((k, v));
                } else {
                    iam_values(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| iam_values(i, out)),
        _ => {}
    }
}

/// Every string inside `v`, intrinsic arguments included.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

#[test]
fn no_wildcard_in_any_iam_action_or_resource() {
    for props in [MetricsStackProps::default(), MetricsStackProps::standalone()] {
        let t = template(&props);
        let mut found = Vec::new();
        iam_values(&t["Resources"], &mut found);
        let resources = found.iter().filter(|(k, _)| *k == "Resource").count();
        assert!(resources >= 7, "the walk sees every statement's resources: {found:?}");
        for (key, value) in found {
            for s in strings(value) {
                assert!(!s.contains('*'), "{key} {s} in {}", props.stack_name);
            }
        }
    }
}

#[test]
fn log_groups_alarms_and_dashboard() {
    let t = workshop();
    for (id, name) in [
        ("PublishMetricsLogGroup", "/aws/lambda/PublishMetrics"),
        ("EventsLoadTestLogGroup", "/aws/lambda/EventsLoadTest"),
    ] {
        assert_eq!(props(&t, id)["LogGroupName"], name);
        assert_eq!(props(&t, id)["RetentionInDays"], 14);
    }
    let alarm = |id: &str| props(&t, id).clone();
    let a = alarm("DeadLetterQueueAlarm");
    assert_eq!(
        (a["Namespace"].as_str(), a["MetricName"].as_str()),
        (Some("AWS/SQS"), Some("ApproximateNumberOfMessagesVisible"))
    );
    assert_eq!(a["Dimensions"][0]["Value"], json!({"Fn::GetAtt": ["MetricsDeadLetterQueue", "QueueName"]}));
    assert_eq!(a["Threshold"], 1.0);
    let a = alarm("QueueAgeAlarm");
    assert_eq!(a["MetricName"], "ApproximateAgeOfOldestMessage");
    assert_eq!(a["Threshold"], 900.0);
    let a = alarm("PublishMetricsErrorsAlarm");
    assert_eq!((a["Namespace"].as_str(), a["MetricName"].as_str()), (Some("AWS/Lambda"), Some("Errors")));
    assert_eq!(a["Dimensions"][0], json!({"Name": "FunctionName", "Value": {"Ref": "PublishMetrics"}}));
    let a = alarm("TableWriteThrottleAlarm");
    assert_eq!(
        (a["Namespace"].as_str(), a["MetricName"].as_str()),
        (Some("AWS/DynamoDB"), Some("WriteThrottleEvents"))
    );
    assert_eq!(a["Dimensions"][0], json!({"Name": "TableName", "Value": {"Ref": "MetricsTable"}}));

    let body = props(&t, "MetricsDashboard")["DashboardBody"]["Fn::Sub"].as_str().unwrap();
    let filled = body
        .replace("${PublishMetrics}", "PublishMetrics")
        .replace("${MetricsQueue.QueueName}", "MetricsQueue")
        .replace("${MetricsDeadLetterQueue.QueueName}", "MetricsQueue-DLQ")
        .replace("${MetricsTable}", "serverlesspresso-metrics-table")
        .replace("${AWS::Region}", "us-east-1");
    let dash: Value = serde_json::from_str(&filled).expect("the body is JSON once substituted");
    let metric_names: Vec<&str> = dash["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().unwrap())
        .filter_map(|m| m[1].as_str())
        .collect();
    for want in [
        "ConcurrentExecutions",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "ConsumedWriteCapacityUnits",
        "ProvisionedWriteCapacityUnits",
    ] {
        assert!(metric_names.contains(&want), "{want} in {metric_names:?}");
    }
}

#[test]
fn outputs_name_everything_a_user_needs() {
    let t = workshop();
    let outputs = t["Outputs"].as_object().unwrap();
    let want = [
        ("QueueUrl", json!({"Ref": "MetricsQueue"})),
        ("QueueArn", json!({"Fn::GetAtt": ["MetricsQueue", "Arn"]})),
        ("DeadLetterQueueUrl", json!({"Ref": "MetricsDeadLetterQueue"})),
        ("TableName", json!({"Ref": "MetricsTable"})),
        ("PublishMetricsFunctionName", json!({"Ref": "PublishMetrics"})),
        ("EventsLoadTestFunctionName", json!({"Ref": "EventsLoadTest"})),
        ("EventBusName", json!("Serverlesspresso")),
    ];
    for (name, value) in want {
        assert_eq!(outputs[name]["Value"], value, "{name}");
    }
    assert!(outputs.contains_key("EventBusArn"));
}

#[test]
fn standalone_stack_creates_its_bus() {
    let t = template(&MetricsStackProps::standalone());
    assert_eq!(props(&t, "EventBus"), &json!({"Name": "Serverlesspresso"}));
    assert_eq!(props(&t, "OrderMetricsRule")["EventBusName"], json!({"Fn::GetAtt": ["EventBus", "Name"]}));
    assert_eq!(
        props(&t, "EventsLoadTest")["Environment"]["Variables"]["EVENT_BUS_NAME"],
        json!({"Fn::GetAtt": ["EventBus", "Name"]})
    );
    assert_eq!(t["Outputs"]["EventBusArn"]["Value"], json!({"Fn::GetAtt": ["EventBus", "Arn"]}));
    assert!(workshop()["Resources"].get("EventBus").is_none());
}

#[test]
fn another_environment_is_one_call_with_its_own_names() {
    let mut props = MetricsStackProps::for_environment("staging", None).unwrap();
    props.table_billing = Billing::Provisioned { read: 2, write: 20 };
    assert_eq!(
        props.bus,
        BusProps::Create { name: "Serverlesspresso-staging".into() },
        "its own bus, never production's"
    );
    let staging = template(&props);
    let prod = workshop();
    for (id, key) in [
        ("MetricsQueue", "QueueName"),
        ("MetricsDeadLetterQueue", "QueueName"),
        ("MetricsTable", "TableName"),
        ("PublishMetrics", "FunctionName"),
        ("EventsLoadTest", "FunctionName"),
        ("OrderMetricsRule", "Name"),
    ] {
        let name = props_of(&staging, id, key);
        assert!(name.ends_with("-staging"), "{id}: {name}");
        assert_ne!(name, props_of(&prod, id, key));
    }
    assert_eq!(props_of(&staging, "EventBus", "Name"), "Serverlesspresso-staging");
    assert_eq!(staging["Resources"]["MetricsTable"]["Properties"]["ProvisionedThroughput"]["WriteCapacityUnits"], 20);
    assert_eq!(props_of(&staging, "AlarmTopic", "TopicName"), "serverlesspresso-metrics-staging-alarms");

    // Importing a bus is explicit, and never the production one.
    let imported = MetricsStackProps::for_environment("staging", Some("Serverlesspresso-shared-staging")).unwrap();
    assert_eq!(imported.bus, BusProps::Import { name: "Serverlesspresso-shared-staging".into() });
    let err = MetricsStackProps::for_environment("staging", Some("Serverlesspresso")).unwrap_err().to_string();
    assert!(err.contains("never imports the production bus"), "{err}");
}

#[test]
fn every_alarm_notifies_the_topic_on_alarm_and_ok() {
    for t in [workshop(), template(&MetricsStackProps::standalone())] {
        let alarms: Vec<(&String, &Value)> =
            t["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm").collect();
        assert_eq!(alarms.len(), 6);
        for (id, alarm) in alarms {
            assert_eq!(alarm["Properties"]["AlarmActions"], json!([{"Ref": "AlarmTopic"}]), "{id}");
            assert_eq!(alarm["Properties"]["OKActions"], json!([{"Ref": "AlarmTopic"}]), "{id}");
        }
        assert_eq!(t["Resources"]["AlarmTopic"]["Type"], "AWS::SNS::Topic");
        let sub = &t["Resources"]["AlarmEmailSubscription"];
        assert_eq!(sub["Condition"], "HasAlarmEmail");
        assert_eq!(
            sub["Properties"],
            json!({"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}})
        );
        assert_eq!(t["Conditions"]["HasAlarmEmail"], json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}));
        assert_eq!(t["Parameters"]["AlarmEmail"]["Default"], "");
        // Bad and failed records alarm on PublishMetrics' own metrics, by its name.
        for (id, metric) in [("BadRecordsAlarm", "BadRecords"), ("FailedRecordsAlarm", "FailedRecords")] {
            let p = &t["Resources"][id]["Properties"];
            assert_eq!(p["Namespace"], order_events::emf::NAMESPACE);
            assert_eq!(p["MetricName"], metric);
            assert_eq!(p["Dimensions"], json!([{"Name": "FunctionName", "Value": {"Ref": "PublishMetrics"}}]));
            assert_eq!((p["Statistic"].as_str(), p["Threshold"].as_f64()), (Some("Sum"), Some(1.0)));
        }
    }
    // An address in the props is the parameter's default, and is checked.
    let props = MetricsStackProps { alarm_email: Some("ops@example.com".into()), ..Default::default() };
    assert_eq!(template(&props)["Parameters"]["AlarmEmail"]["Default"], "ops@example.com");
    let props = MetricsStackProps { alarm_email: Some("not an address".into()), ..Default::default() };
    let err = metrics_stack(&props).unwrap_err().to_string();
    assert!(err.contains("alarm_email") && err.contains("e-mail address"), "{err}");
}

fn props_of(t: &Value, id: &str, key: &str) -> String {
    props(t, id)[key].as_str().unwrap().to_owned()
}

#[test]
fn invalid_props_fail_naming_the_construct() {
    let mut props = MetricsStackProps { batching_window_secs: 0, batch_size: 11, ..Default::default() };
    let err = metrics_stack(&props).unwrap_err().to_string();
    assert!(
        err.starts_with("lambda::EventSourceMapping `PublishMetricsQueueMapping`: BatchSize = 11 is invalid"),
        "{err}"
    );
    props = MetricsStackProps { table_billing: Billing::Provisioned { read: 5, write: 0 }, ..Default::default() };
    let err = metrics_stack(&props).unwrap_err().to_string();
    assert!(err.contains("dynamodb::Table `MetricsTable`: ProvisionedThroughput.WriteCapacityUnits = 0"), "{err}");
    props = MetricsStackProps { max_receive_count: 0, ..Default::default() };
    assert!(metrics_stack(&props).unwrap_err().to_string().contains("maxReceiveCount = 0"));
    props = MetricsStackProps::for_environment("bad env", None).unwrap();
    assert!(metrics_stack(&props).unwrap_err().to_string().contains("StackName"));
}

#[test]
fn synth_is_deterministic() {
    let first = support::artifacts();
    let second = support::artifacts();
    assert_eq!(first, second);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    cfn::synth::write(a.path(), &first).unwrap();
    cfn::synth::write(b.path(), &second).unwrap();
    for artifact in &first {
        let x = std::fs::read(a.path().join(&artifact.file_name)).unwrap();
        let y = std::fs::read(b.path().join(&artifact.file_name)).unwrap();
        assert_eq!(x, y, "{}", artifact.file_name);
    }
}

#[test]
fn yaml_and_json_are_the_same_template() {
    for pair in support::templates().chunks(2) {
        let yaml: Value = serde_yaml::from_str(&pair[0].contents).unwrap();
        let json: Value = serde_json::from_str(&pair[1].contents).unwrap();
        assert_eq!(yaml, json, "{}", pair[0].file_name);
    }
}

#[test]
fn committed_synth_out_is_current() {
    let stale = cfn::synth::stale(&support::workspace_root().join("synth-out"), &support::artifacts()).unwrap();
    assert!(stale.is_empty(), "synth-out is stale, run `cargo run --bin synth`: {stale:?}");
}
