//! The deploy library against moto: bootstrap, a first deploy that creates every resource
//! (checked with the SDK), a second with nothing to change, the two-step deploy, the online
//! diff, destroy leaving the retained table; and the `deploy` binary's one black-box smoke test,
//! for what only the binary does (its printing, `--json`, exit statuses, the printed command of
//! step two).

use test_support as support;

use std::process::Output;

use deploy::cloudformation::{Bootstrapped, Progress};
use deploy::deployer::{DeployOutcome, DestroyOutcome, Plan, Preview};
use deploy::error::DeployError;
use support::moto::Moto;
use support::text;

use crate::library::{self, App, BUCKET, STACK};

fn deploy(moto: &Moto, args: &[&str]) -> Output {
    support::run_against(std::path::Path::new(env!("CARGO_BIN_EXE_deploy")), &moto.endpoint, args)
}

fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// The binary from bootstrap to destroy, as a user runs it: what it prints, its JSON
/// documents, its exit statuses. Everything it decides is the library's, tested below on values.
#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_binary_from_bootstrap_to_destroy() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let lambda_dir = zips.path().to_str().unwrap();

    let out = deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("public access blocked (plain-HTTP endpoint: no TLS-only policy)"), "{stdout}");

    // Step one prints the review, the change set and the command of step two, which carries
    // what chose the stack and where it lives.
    let common = ["--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir];
    let out = deploy(&moto, &[&common[..], &["--prepare"]].concat());
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("MetricsTable"), "the review is printed: {stdout}");
    let line = stdout.lines().find(|l| l.starts_with("prepared change set ")).expect("the change set is named");
    let change_set = line.trim_start_matches("prepared change set ").to_owned();
    let next = stdout.lines().find(|l| l.starts_with("execute it with: ")).expect("the next command");
    for part in [
        format!("--execute '{change_set}'"),
        "--stack standalone".to_owned(),
        "--region 'us-east-1'".to_owned(),
        format!("--endpoint-url '{}'", moto.endpoint),
    ] {
        assert!(next.contains(&part), "{part} in {next}");
    }
    let out = deploy(&moto, &[&common[..], &["--execute", &change_set, "--yes"]].concat());
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("CREATE_COMPLETE"), "stack events are streamed: {stdout}");
    assert!(stdout.contains(&format!("{STACK} deployed")), "{stdout}");
    // A refused step two: exit 1, the reason on stderr.
    let out = deploy(&moto, &[&common[..], &["--execute", &change_set, "--yes"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("its ExecutionStatus is EXECUTE_COMPLETE"), "{}", text(&out.stderr));

    // For CI: one JSON document on stdout (the reviewed plan and the outcome), progress on
    // stderr.
    let email = ["--yes", "--json", "--parameters", "AlarmEmail=ops@example.com"];
    let out = deploy(&moto, &[&common[..], &email].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(plan["stack"], STACK);
    assert!(plan["changeSet"].as_str().is_some_and(|c| !c.is_empty()), "{plan:#}");
    assert_eq!(plan["refused"], serde_json::json!([]));
    assert_eq!(plan["outcome"]["outcome"], "deployed");
    assert!(text(&out.stderr).contains("asset "), "progress goes to stderr: {}", text(&out.stderr));
    let out = deploy(&moto, &[&common[..], &email].concat());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(again["outcome"], serde_json::json!({"outcome": "upToDate", "stack": STACK}));
    let out = deploy(&moto, &[&common[..], &["--yes"]].concat());
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("no changes: {STACK} is up to date")), "{}", text(&out.stdout));
    // An error under --json is a JSON document too.
    let out = deploy(&moto, &["--json", "--stack", "standalone", "--lambda-dir", lambda_dir, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(doc["error"].as_str().unwrap().contains("--asset-bucket is required"), "{doc}");

    // diff: its exit status follows --fail-on.
    let diff = ["diff", "--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir];
    let out = deploy(&moto, &[&diff[..], &["--fail-on", "any-change"]].concat());
    assert!(out.status.success(), "up to date: {}", text(&out.stdout));
    support::fake_zips_of(zips.path(), "build 2");
    let out = deploy(&moto, &[&diff[..], &["--json", "--fail-on", "any-change"]].concat());
    assert_eq!(out.status.code(), Some(1), "new code is a change: {}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["upToDate"], false, "{doc:#}");
    assert!(deploy(&moto, &[&diff[..], &["--fail-on", "destructive"]].concat()).status.success());
    let out = deploy(&moto, &["diff", "--template", "--stack", "standalone"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no differences"), "{}", text(&out.stdout));

    let out = deploy(&moto, &["outputs", "--json", "--stack", "standalone"]);
    assert!(out.status.success());
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("outputs --json is JSON");
    assert!(outputs.is_object());
    let out = deploy(&moto, &["redrive", "--stack", "standalone"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("MetricsQueue-DLQ is empty: nothing to move"), "{}", text(&out.stdout));

    // Without --yes and without a terminal, destroy refuses; with it, it lists what goes (queues
    // with their depth) before deleting, and what stays.
    let out = deploy(&moto, &["destroy", "--stack", "standalone"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("pass --yes"), "{}", text(&out.stderr));
    let out = deploy(&moto, &["destroy", "--yes", "--stack", "standalone"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("MetricsQueue (AWS::SQS::Queue)") && stdout.contains("waiting"), "{stdout}");
    assert!(stdout.contains("and keeps (DeletionPolicy: Retain): MetricsTable"), "{stdout}");
    assert!(stdout.contains("retained (DeletionPolicy: Retain), still in the account: MetricsTable"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_secures_a_new_bucket_and_leaves_an_existing_one_to_its_owner() {
    let app = App::unbootstrapped();
    let d = app.deployer().await;
    let config = app.moto.sdk_config().await;
    let s3 = s3_client(&config);
    let mut events = Vec::new();
    let made = d.bootstrap(BUCKET, false, &mut |p| events.push(p)).await.unwrap();
    // A plain-HTTP endpoint gets no TLS-only policy: it would refuse every call.
    let expected = Bootstrapped { bucket: BUCKET.into(), created: true, configured: true, tls_only: false };
    assert_eq!(made, expected);
    assert!(events.contains(&Progress::BucketCreated { bucket: BUCKET.into() }), "{events:?}");
    // moto answers GetBucketVersioning under the wrong XML root, which the SDK refuses: read the
    // status from the body it sent.
    match s3.get_bucket_versioning().bucket(BUCKET).send().await {
        Ok(v) => assert_eq!(v.status(), Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
        Err(e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
            assert!(body.unwrap_or_default().contains("<Status>Enabled</Status>"), "{e:?}");
        }
    }
    // Again, on the bucket that exists now: its settings are its owner's, left alone unless
    // `update` (here: a policy of the owner's own stays).
    let own = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Sid": "Owners", "Effect": "Deny",
        "Principal": "*", "Action": "s3:DeleteBucket", "Resource": format!("arn:aws:s3:::{BUCKET}")}]});
    s3.put_bucket_policy().bucket(BUCKET).policy(own.to_string()).send().await.unwrap();
    let again = d.bootstrap(BUCKET, false, &mut |_| ()).await.unwrap();
    assert_eq!(again, Bootstrapped { created: false, configured: false, ..expected.clone() });
    let kept = s3.get_bucket_policy().bucket(BUCKET).send().await.unwrap();
    assert!(kept.policy().unwrap_or_default().contains("Owners"), "{kept:?}");
    let updated = d.bootstrap(BUCKET, true, &mut |_| ()).await.unwrap();
    assert_eq!(updated, Bootstrapped { created: false, ..expected });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_deploy_creates_every_resource_protected_and_a_second_changes_nothing() {
    let app = App::start().await;
    let (d, t, options) = (app.deployer().await, &app.target, app.options());
    let config = app.moto.sdk_config().await;
    let (outcome, events) = library::deploy(&d, t, &options).await;
    match outcome.unwrap() {
        DeployOutcome::Deployed { stack, .. } => assert_eq!(stack, STACK),
        other => panic!("{other:?}"),
    }
    let uploaded: Vec<&str> = events
        .iter()
        .filter_map(|p| match p {
            Progress::Asset { name, uploaded: true, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(uploaded.len(), app.stack.functions().len(), "each zip went up once: {events:?}");
    let reviewed = library::reviews(&events);
    assert_eq!(reviewed.len(), 1, "{events:?}");
    assert!(reviewed[0].review.changes.iter().any(|c| c.logical_resource_id == "MetricsTable"), "{reviewed:?}");
    assert!(reviewed[0].review.refused.is_empty(), "a new stack loses nothing: {reviewed:?}");
    let created = events.iter().any(|p| matches!(p, Progress::StackEvent(e) if e.status == "CREATE_COMPLETE"));
    assert!(created, "stack events are reported: {events:?}");
    assert!(
        events
            .iter()
            .any(|p| matches!(p, Progress::PolicySet { stack, lifted } if stack == STACK && lifted.is_empty())),
        "{events:?}"
    );

    check_resources(&app.moto, &config).await;

    // Layer 3: the stack policy denies replacing or deleting each stateful resource.
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let policy = cfn.get_stack_policy().stack_name(STACK).send().await.unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.stack_policy_body().expect("a stack policy")).unwrap();
    let deny = &policy["Statement"][1];
    assert_eq!(deny["Action"], serde_json::json!(["Update:Replace", "Update:Delete"]));
    for id in ["MetricsTable", "MetricsQueue", "MetricsDeadLetterQueue"] {
        assert!(
            deny["Resource"].as_array().unwrap().contains(&format!("LogicalResourceId/{id}").into()),
            "{id}: {policy}"
        );
    }
    // The stack carries the app's tag.
    let described = cfn.describe_stacks().stack_name(STACK).send().await.unwrap();
    let tags = described.stacks()[0].tags();
    assert!(tags.iter().any(|tag| tag.key() == Some(&t.tag.0) && tag.value() == Some(&t.tag.1)), "{tags:?}");

    // Nothing changed: the plan says so, no change set, the zips are there already.
    let plan = d.plan(t, &options, &mut |_| ()).await.unwrap();
    assert!(matches!(&plan, Plan::UpToDate { stack } if stack == STACK), "{plan:?}");
    let (again, events) = library::deploy(&d, t, &options).await;
    assert_eq!(again.unwrap(), DeployOutcome::UpToDate { stack: STACK.into() });
    assert!(events.iter().all(|p| !matches!(p, Progress::Asset { uploaded: true, .. })), "{events:?}");
    assert!(library::reviews(&events).is_empty());
    assert_eq!(d.template_diff(t).await.unwrap(), Vec::<String>::new());
    assert!(d.outputs(t).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_lists_what_goes_keeps_the_table_and_refuses_a_stack_not_the_apps() {
    let app = App::start().await.deployed().await;
    let (d, t) = (app.deployer().await, &app.target);
    let config = app.moto.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);

    // A stack without the app's tag is refused unless forced.
    let other = r#"{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "someone-elses"}}}}"#;
    cfn.create_stack().stack_name("someone-elses").template_body(other).send().await.unwrap();
    let mut theirs = app.target();
    theirs.name = "someone-elses".into();
    let refused = d.destroy_plan(&theirs, false, false).await.unwrap_err();
    assert!(matches!(&refused, DeployError::NotOurs { stack, .. } if stack == "someone-elses"), "{refused:?}");
    let forced = d.destroy_plan(&theirs, true, false).await.unwrap().expect("a plan");
    assert_eq!(forced.deletes.len(), 1, "{forced:?}");
    assert!(matches!(d.destroy(forced, &mut |_| ()).await.unwrap(), DestroyOutcome::Destroyed { .. }));

    // Ours: every resource that goes is listed before anything is deleted, queues with their
    // depth; the retained table is kept and said to be.
    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.send_message().queue_url(queue_url(&sqs, "MetricsQueue").await).message_body("{}").send().await.unwrap();
    let plan = d.destroy_plan(t, false, false).await.unwrap().expect("a plan");
    let queue = plan.deletes.iter().find(|r| r.logical_id == "MetricsQueue").expect("the queue goes");
    assert_eq!(queue.resource_type, "AWS::SQS::Queue");
    assert_eq!(queue.holds.as_deref(), Some("with 1 waiting and 0 in flight message(s)"), "{queue:?}");
    assert!(queue.physical_id.ends_with("/MetricsQueue"), "{queue:?}");
    let kept = vec![("MetricsTable".to_owned(), "serverlesspresso-metrics-table".to_owned())];
    assert_eq!(plan.keeps, kept);
    assert!(plan.deletes.iter().all(|r| r.logical_id != "MetricsTable"));
    let outcome = d.destroy(plan, &mut |_| ()).await.unwrap();
    assert_eq!(outcome, DestroyOutcome::Destroyed { stack: STACK.into(), kept });
    let gone = cfn.describe_stacks().stack_name(STACK).send().await;
    let deleted = match &gone {
        Err(_) => true,
        Ok(o) => o
            .stacks()
            .iter()
            .all(|s| s.stack_status() == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)),
    };
    assert!(deleted, "the stack is gone: {gone:?}");
    assert!(d.destroy_plan(t, false, false).await.unwrap().is_none(), "nothing left to destroy");
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let table = ddb.describe_table().table_name("serverlesspresso-metrics-table").send().await;
    assert!(table.is_ok(), "the retained table survives: {table:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_two_step_deploy_prepares_then_executes_the_reviewed_change_set() {
    let app = App::start().await;
    let (d, t) = (app.deployer().await, &app.target);
    let options = deploy::deployer::DeployOptions { yes: false, ..app.options() };
    let (plan, outcome) = d.prepare(t, &options, &mut |_| ()).await.unwrap();
    let Plan::Change(planned) = plan else { panic!("a new stack is a change: {plan:?}") };
    assert!(planned.review.changes.iter().any(|c| c.logical_resource_id == "MetricsTable"), "{planned:?}");
    let change_set = planned.id.clone();
    assert_eq!(outcome, DeployOutcome::Prepared { stack: STACK.into(), change_set: change_set.clone() });
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let status = cfn.describe_stacks().stack_name(STACK).send().await.unwrap().stacks()[0].stack_status().cloned();
    assert_eq!(status, Some(aws_sdk_cloudformation::types::StackStatus::ReviewInProgress), "nothing executed yet");

    // Not another stack's change set.
    let mut other = app.target();
    other.name = "other-stack".into();
    let approve = &mut |_: &deploy::cloudformation::PlannedChange| deploy::deployer::Approval::Yes;
    let err = d.execute_prepared(&other, &change_set, &app.options(), approve, &mut |_| ()).await.unwrap_err();
    assert!(
        matches!(&err, DeployError::ChangeSetUnusable { why, .. } if why == &format!("it belongs to stack {STACK}, not other-stack")),
        "{err:?}"
    );
    // Step two asks again (the approval level is the user's, not step one's).
    let mut asked = 0;
    let outcome = d
        .execute_prepared(
            t,
            &change_set,
            &options,
            &mut |_| {
                asked += 1;
                deploy::deployer::Approval::Yes
            },
            &mut |_| (),
        )
        .await
        .unwrap();
    assert!(matches!(&outcome, DeployOutcome::Deployed { stack, .. } if stack == STACK), "{outcome:?}");
    assert_eq!(asked, 1, "a new stack adds IAM roles: approval is asked");
    // Executed once: the same change set again is refused by its ExecutionStatus.
    let err = d.execute_prepared(t, &change_set, &app.options(), approve, &mut |_| ()).await.unwrap_err();
    assert!(
        matches!(&err, DeployError::ChangeSetUnusable { why, .. } if why.starts_with("its ExecutionStatus is EXECUTE_COMPLETE, not AVAILABLE")),
        "{err:?}"
    );
}

/// A deploy that does not give a parameter keeps its deployed value (the alarms still reach
/// someone), through an up-to-date deploy and a new build alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_parameter_given_once_is_kept_by_the_deploys_after() {
    let app = App::start().await.deployed().await;
    let (d, t) = (app.deployer().await, &app.target);
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let email =
        deploy::deployer::DeployOptions { parameters: vec!["AlarmEmail=ops@example.com".into()], ..app.options() };
    let (outcome, events) = library::deploy(&d, t, &email).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    // moto does not evaluate conditions, so it lists no resource change for a new parameter
    // value (AWS would add the e-mail subscription): an executable change set with zero
    // resource changes, which must be executed all the same (the CDK CLI's old bug).
    let reviewed = library::reviews(&events);
    assert!(reviewed.len() == 1 && reviewed[0].review.changes.is_empty(), "{reviewed:?}");
    let parameters = deploy::cloudformation::deployed_parameters(&cfn, STACK).await.unwrap();
    assert_eq!(parameters["AlarmEmail"], "ops@example.com");
    let (again, _) = library::deploy(&d, t, &email).await;
    assert_eq!(again.unwrap(), DeployOutcome::UpToDate { stack: STACK.into() });

    let (kept, _) = library::deploy(&d, t, &app.options()).await;
    assert_eq!(kept.unwrap(), DeployOutcome::UpToDate { stack: STACK.into() }, "not giving it is no change");
    let code_key = parameters["PublishMetricsCodeKey"].clone();
    support::fake_zips_of(app.zips.path(), "build 2");
    let (rebuilt, _) = library::deploy(&d, t, &app.options()).await;
    assert!(matches!(rebuilt, Ok(DeployOutcome::Deployed { .. })), "{rebuilt:?}");
    let parameters = deploy::cloudformation::deployed_parameters(&cfn, STACK).await.unwrap();
    assert_eq!(parameters["AlarmEmail"], "ops@example.com", "kept: {parameters:?}");
    assert_ne!(parameters["PublishMetricsCodeKey"], code_key, "the new build's key: {parameters:?}");
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url().queue_name(name).send().await.unwrap().queue_url().unwrap().to_owned()
}

async fn check_resources(moto: &Moto, config: &aws_config::SdkConfig) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue = queue_url(&sqs, "MetricsQueue").await;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    let get = |k: &str| attrs[&aws_sdk_sqs::types::QueueAttributeName::from(k)].clone();
    assert_eq!(get("VisibilityTimeout"), "210");
    assert_eq!(get("MessageRetentionPeriod"), "345600");
    let redrive: serde_json::Value = serde_json::from_str(&get("RedrivePolicy")).unwrap();
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "10");
    assert!(redrive["deadLetterTargetArn"].as_str().unwrap().ends_with(":MetricsQueue-DLQ"));
    queue_url(&sqs, "MetricsQueue-DLQ").await;

    let ddb = aws_sdk_dynamodb::Client::new(config);
    let table = ddb.describe_table().table_name("serverlesspresso-metrics-table").send().await.unwrap();
    let table = table.table().unwrap();
    let tp = table.provisioned_throughput().unwrap();
    assert_eq!((tp.read_capacity_units(), tp.write_capacity_units()), (Some(5), Some(5)));
    let keys: Vec<(&str, &str)> =
        table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, [("PK", "HASH"), ("SK", "RANGE")]);

    let lambda = aws_sdk_lambda::Client::new(config);
    let concurrency = lambda.get_function_concurrency().function_name("PublishMetrics").send().await.unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), Some(1));
    let f = lambda.get_function().function_name("PublishMetrics").send().await.unwrap();
    let c = f.configuration().unwrap();
    assert_eq!(c.timeout(), Some(30));
    assert_eq!(c.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    let mappings = lambda.list_event_source_mappings().function_name("PublishMetrics").send().await.unwrap();
    let m = &mappings.event_source_mappings()[0];
    assert_eq!(m.batch_size(), Some(10));
    assert_eq!(m.maximum_batching_window_in_seconds(), Some(30));
    let types: Vec<&str> = m.function_response_types().iter().map(|t| t.as_str()).collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    assert!(m.event_source_arn().unwrap().ends_with(":MetricsQueue"));

    let events = aws_sdk_eventbridge::Client::new(config);
    let rule =
        events.describe_rule().name("OrderMetrics-DynamoDB").event_bus_name("Serverlesspresso").send().await.unwrap();
    let pattern: serde_json::Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"], serde_json::json!(["awsserverlessda.serverlesspresso"]));
    assert_eq!(pattern["detail-type"].as_array().unwrap().len(), 3);
    let targets = events
        .list_targets_by_rule()
        .rule("OrderMetrics-DynamoDB")
        .event_bus_name("Serverlesspresso")
        .send()
        .await
        .unwrap();
    assert!(targets.targets()[0].arn().ends_with(":MetricsQueue"));

    // IAM through a plain Query call: aws-sdk-iam would be the largest crate of the test build
    // (115 s of a cold one) for this one read-back.
    let role = c.role().unwrap().rsplit('/').next().unwrap().to_owned();
    let answer = moto
        .query(
            "iam",
            &[
                ("Action", "GetRolePolicy"),
                ("Version", "2010-05-08"),
                ("RoleName", &role),
                ("PolicyName", "PublishMetricsRolePolicy"),
            ],
        )
        .await;
    let document = support::moto::xml_element(&answer, "PolicyDocument").expect("a PolicyDocument");
    // IAM returns policy documents URL-encoded.
    let doc = urlencoding::decode(&document).unwrap().into_owned();
    for action in ["dynamodb:UpdateItem", "sqs:ReceiveMessage", "logs:PutLogEvents"] {
        assert!(doc.contains(action), "{action} in {doc}");
    }
    assert!(!doc.contains("\"*\""), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_templates_go_through_s3() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let small = deploy::cloudformation::template_source(&s3, Some(BUCKET), None, "{}".into()).await.unwrap();
    assert!(matches!(small, deploy::cloudformation::TemplateSource::Body(_)));
    let big = format!("{{\"Description\": \"{}\"}}", "x".repeat(deploy::cloudformation::MAX_TEMPLATE_BODY));
    let source = deploy::cloudformation::template_source(&s3, Some(BUCKET), None, big).await.unwrap();
    let deploy::cloudformation::TemplateSource::Url(url) = source else { panic!("a large template is uploaded") };
    let key = url.split(&format!("/{BUCKET}/")).nth(1).unwrap();
    assert!(key.starts_with("templates/") && key.ends_with(".json"), "{url}");
    s3.head_object().bucket(BUCKET).key(key).send().await.expect("the template is in the bucket");
    let none = deploy::cloudformation::template_source(&s3, None, None, "x".repeat(60_000)).await;
    assert!(none.is_err_and(|e| e.to_string().contains("pass --asset-bucket")));
}

/// The policy `bootstrap` sets on a TLS endpoint refuses plain HTTP: moto enforces bucket
/// policies, and it is reached over HTTP here.
#[tokio::test(flavor = "multi_thread")]
async fn the_tls_only_policy_refuses_plain_http() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.put_object().bucket(BUCKET).key("before").body(b"x".to_vec().into()).send().await.unwrap();
    let policy = deploy::cloudformation::tls_only_policy("us-east-1", BUCKET);
    s3.put_bucket_policy().bucket(BUCKET).policy(policy.to_string()).send().await.unwrap();
    let refused = s3.put_object().bucket(BUCKET).key("after").body(b"x".to_vec().into()).send().await.unwrap_err();
    assert_eq!(refused.raw_response().map(|r| r.status().as_u16()), Some(403), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_asset_is_trusted_only_by_its_checksum() {
    use deploy::cloudformation::upload_once;
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    assert!(upload_once(&s3, BUCKET, None, "f/abc.zip", b"zip bytes".to_vec()).await.unwrap(), "uploaded");
    assert!(!upload_once(&s3, BUCKET, None, "f/abc.zip", b"zip bytes".to_vec()).await.unwrap(), "same checksum: kept");
    // Something else wrote other bytes at the key: refused, naming what it found. (moto returns
    // no checksum on HEAD, so the ETag, the MD5 of a single-part upload, decides here; on AWS
    // the SHA-256 checksum the upload stored does.)
    s3.put_object().bucket(BUCKET).key("f/other.zip").body(b"tampered".to_vec().into()).send().await.unwrap();
    let err = upload_once(&s3, BUCKET, None, "f/other.zip", b"zip bytes".to_vec()).await.unwrap_err();
    assert!(matches!(err, deploy::error::DeployError::ForeignObject { .. }), "{err:?}");
    assert!(err.to_string().contains("holds other bytes"), "{err}");
    // The same bytes written by someone else, without a checksum: kept.
    s3.put_object().bucket(BUCKET).key("f/plain.zip").body(b"zip bytes".to_vec().into()).send().await.unwrap();
    assert!(!upload_once(&s3, BUCKET, None, "f/plain.zip", b"zip bytes".to_vec()).await.unwrap());
    // A role without s3:ListBucket gets 403, not 404, on HEAD of a missing key (AWS's rule;
    // moto answers 404 whatever the policy, so a proxy answers every HEAD with 403 here): that
    // is "not known there", so it uploads, instead of "create the bucket".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = moto.endpoint.trim_start_matches("http://").to_owned();
    let owners = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = owners.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let (upstream, seen) = (upstream.clone(), seen.clone());
            tokio::spawn(async move {
                let Some((head, body)) = support::proxy::read_request(&mut conn).await else { return };
                let method = head.split(' ').next().unwrap_or_default().to_owned();
                let owner = support::proxy::header(&head, "x-amz-expected-bucket-owner").map(str::to_owned);
                seen.lock().unwrap().push((method, owner));
                if head.starts_with("HEAD ") {
                    support::proxy::respond(&mut conn, "HTTP/1.1 403 Forbidden\r\n", b"").await;
                } else if let Some((head, body)) = support::proxy::relay(&upstream, &head, &body).await {
                    support::proxy::respond(&mut conn, &head, &body).await;
                }
            });
        }
    });
    let denied = s3_client(&support::moto::sdk_config_at(&endpoint).await);
    assert!(
        upload_once(&denied, BUCKET, Some("123456789012"), "f/new.zip", b"new bytes".to_vec()).await.unwrap(),
        "uploaded"
    );
    let stored = s3.get_object().bucket(BUCKET).key("f/new.zip").send().await.unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), b"new bytes");
    // Both calls named the account that must own the bucket.
    let owner = Some("123456789012".to_owned());
    assert_eq!(
        *owners.lock().unwrap(),
        [("HEAD".to_owned(), owner.clone()), ("PUT".to_owned(), owner)],
        "ExpectedBucketOwner on every call"
    );
    server.abort();
}

/// The objects in the asset bucket.
async fn objects(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

/// `diff` (online) shows what a deploy would change and leaves nothing behind: no stack in
/// REVIEW_IN_PROGRESS for a new one, no upload, no change set.
#[tokio::test(flavor = "multi_thread")]
async fn the_online_diff_leaves_nothing_behind() {
    let app = App::start().await;
    let (d, t, options) = (app.deployer().await, &app.target, app.options());
    let config = app.moto.sdk_config().await;
    let s3 = s3_client(&config);
    let cfn = aws_sdk_cloudformation::Client::new(&config);

    // No stack yet: everything is an addition, reviewed from the template alone.
    let preview = d.diff(t, &options, &mut |_| ()).await.unwrap();
    let Preview::NewStack { stack, review } = &preview else { panic!("{preview:?}") };
    assert_eq!(stack, STACK);
    let table = review.changes.iter().find(|c| c.logical_resource_id == "MetricsTable").expect("the table");
    assert_eq!(table.action, deploy::guard::Action::Add);
    assert!(review.refused.is_empty(), "{review:?}");
    assert!(cfn.describe_stacks().stack_name(STACK).send().await.is_err(), "no stack was created");
    assert!(objects(&s3).await.is_empty(), "nothing was uploaded");

    let (outcome, _) = library::deploy(&d, t, &options).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    let uploaded = objects(&s3).await;
    let preview = d.diff(t, &options, &mut |_| ()).await.unwrap();
    assert!(matches!(&preview, Preview::UpToDate { stack } if stack == STACK), "{preview:?}");
    assert!(preview.review().is_none());

    // New code: the functions change; the diff reviews a change set without uploading, with no
    // bucket given (the stack's own is kept), and deletes it.
    let v2 = tempfile::tempdir().unwrap();
    support::fake_zips_of(v2.path(), "v2");
    let new_code = deploy::deployer::DeployOptions {
        asset_bucket: None,
        lambda_dir: Some(v2.path().to_owned()),
        ..options.clone()
    };
    let mut events = Vec::new();
    let preview = d.diff(t, &new_code, &mut |p| events.push(p)).await.unwrap();
    // (moto's change set lists no resource for a parameter change; AWS lists both functions.)
    assert!(matches!(&preview, Preview::Change(planned) if planned.stack == STACK), "{preview:?}");
    assert!(events.contains(&Progress::CreatingChangeSet { stack: STACK.into(), update: true }), "{events:?}");
    assert!(events.iter().all(|p| !matches!(p, Progress::Asset { uploaded: true, .. })), "{events:?}");
    assert_eq!(objects(&s3).await, uploaded, "nothing was uploaded");
    // (moto lists executed change sets still; AWS removes them once one is executed.)
    let change_sets = cfn.list_change_sets().stack_name(STACK).send().await.unwrap();
    let executed = Some(&aws_sdk_cloudformation::types::ExecutionStatus::ExecuteComplete);
    assert!(change_sets.summaries().iter().all(|c| c.execution_status() == executed), "{change_sets:?}");
}
