//! The `deploy` binary against a moto server: bootstrap, a first deploy that creates every
//! resource (checked with the SDK), a second deploy with nothing to change, outputs, a template
//! diff, and destroy leaving the retained table.
//!
//! The Lambda zips here are small stand-ins with an arm64 ELF header (moto stores functions but
//! never runs them); the real zips are built and checked by `tests/integration/arm64_build.rs`.

use test_support as support;

use std::process::Output;

use support::moto::Moto;
use support::text;

const STACK: &str = "serverlesspresso-metrics-standalone";
const BUCKET: &str = "serverlesspresso-assets-test";

fn deploy(moto: &Moto, args: &[&str]) -> Output {
    support::run_against(std::path::Path::new(env!("CARGO_BIN_EXE_deploy")), &moto.endpoint, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_no_op_outputs_diff_and_destroy() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let lambda_dir = zips.path().to_str().unwrap();
    let config = moto.sdk_config().await;

    let out = deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("public access blocked"), "{stdout}");
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    // moto answers GetBucketVersioning under the wrong XML root, which the SDK refuses: read the
    // status from the body it sent.
    match s3.get_bucket_versioning().bucket(BUCKET).send().await {
        Ok(v) => assert_eq!(v.status(), Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
        Err(e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
            assert!(body.unwrap_or_default().contains("<Status>Enabled</Status>"), "{e:?}");
        }
    }
    assert!(stdout.contains("plain-HTTP endpoint: no TLS-only policy"), "{stdout}");
    // Again, on the bucket that exists now: its settings are its owner's, left alone unless
    // --update (here: a policy of the owner's own stays).
    let own = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Sid": "Owners", "Effect": "Deny",
        "Principal": "*", "Action": "s3:DeleteBucket", "Resource": format!("arn:aws:s3:::{BUCKET}")}]});
    s3.put_bucket_policy().bucket(BUCKET).policy(own.to_string()).send().await.unwrap();
    let out = deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("were left as they are (pass --update"), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("created bucket"), "{}", text(&out.stdout));
    let kept = s3.get_bucket_policy().bucket(BUCKET).send().await.unwrap();
    assert!(kept.policy().unwrap_or_default().contains("Owners"), "{kept:?}");
    let out = deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET, "--update"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("public access blocked"), "{}", text(&out.stdout));

    let first = ["--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir, "--yes"];
    let out = deploy(&moto, &first);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("uploaded"), "{stdout}");
    assert!(stdout.contains("MetricsTable"), "the change table lists resources: {stdout}");
    assert!(stdout.contains("CREATE_COMPLETE"), "stack events are streamed: {stdout}");
    assert!(stdout.contains(&format!("{STACK} deployed")), "{stdout}");

    check_resources(&moto, &config).await;

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

    // Nothing changed: no change set, exit 0, assets already there.
    let out = deploy(&moto, &first);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("already there"), "{stdout}");
    assert!(stdout.contains(&format!("no changes: {STACK} is up to date")), "{stdout}");

    let out = deploy(&moto, &["diff", "--template", "--stack", "standalone"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no differences"), "{}", text(&out.stdout));

    let out = deploy(&moto, &["outputs", "--json", "--stack", "standalone"]);
    assert!(out.status.success());
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("outputs --json is JSON");
    assert!(outputs.is_object());

    // Without --yes and without a terminal, destroy refuses.
    let out = deploy(&moto, &["destroy", "--stack", "standalone"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("pass --yes"), "{}", text(&out.stderr));

    // The stack carries the app's tag; a stack without it is refused unless --force.
    let described = cfn.describe_stacks().stack_name(STACK).send().await.unwrap();
    let tags = described.stacks()[0].tags();
    assert!(tags.iter().any(|t| t.key() == Some("serverlesspresso:app") && t.value() == Some("metrics")), "{tags:?}");
    let other = r#"{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "someone-elses"}}}}"#;
    cfn.create_stack().stack_name("someone-elses").template_body(other).send().await.unwrap();
    let out = deploy(&moto, &["destroy", "--yes", "--stack-name", "someone-elses"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not carry the tag serverlesspresso:app=metrics"), "{}", text(&out.stderr));
    assert!(deploy(&moto, &["destroy", "--yes", "--force", "--stack-name", "someone-elses"]).status.success());

    let out = deploy(&moto, &["destroy", "--yes", "--stack", "standalone"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    // What goes is listed before anything is deleted, queues with their depth.
    assert!(stdout.contains("MetricsQueue (AWS::SQS::Queue)") && stdout.contains("waiting"), "{stdout}");
    assert!(stdout.contains("and keeps (DeletionPolicy: Retain): MetricsTable"), "{stdout}");
    assert!(stdout.contains("retained (DeletionPolicy: Retain), still in the account: MetricsTable"), "{stdout}");
    // (the same client as above)
    let gone = cfn.describe_stacks().stack_name(STACK).send().await;
    let deleted = match &gone {
        Err(_) => true,
        Ok(o) => o
            .stacks()
            .iter()
            .all(|s| s.stack_status() == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)),
    };
    assert!(deleted, "the stack is gone: {gone:?}");
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let table = ddb.describe_table().table_name("serverlesspresso-metrics-table").send().await;
    assert!(table.is_ok(), "the retained table survives: {table:?}");
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
async fn a_two_step_deploy_prepares_then_executes_the_reviewed_change_set() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let lambda_dir = zips.path().to_str().unwrap();
    assert!(deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET]).status.success());
    let common = ["--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir];
    let out = deploy(&moto, &[&common[..], &["--prepare"]].concat());
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("prepared change set ")).expect("the change set is named");
    let change_set = line.trim_start_matches("prepared change set ").to_owned();
    assert!(stdout.contains("MetricsTable"), "the review is printed: {stdout}");
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let status = cfn.describe_stacks().stack_name(STACK).send().await.unwrap().stacks()[0].stack_status().cloned();
    assert_eq!(status, Some(aws_sdk_cloudformation::types::StackStatus::ReviewInProgress), "nothing executed yet");
    // The command printed for step two carries what chose the stack and where it lives.
    let next = stdout.lines().find(|l| l.starts_with("execute it with: ")).expect("the next command");
    for part in [
        format!("--execute '{change_set}'"),
        "--stack standalone".to_owned(),
        "--region 'us-east-1'".to_owned(),
        format!("--endpoint-url '{}'", moto.endpoint),
    ] {
        assert!(next.contains(&part), "{part} in {next}");
    }
    // Not another stack's change set.
    let out =
        deploy(&moto, &[&common[..], &["--execute", &change_set, "--yes", "--stack-name", "other-stack"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("it belongs to stack {STACK}, not other-stack")), "{stderr}");
    let out = deploy(&moto, &[&common[..], &["--execute", &change_set, "--yes"]].concat());
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("{STACK} deployed")), "{}", text(&out.stdout));
    // Executed once: the same change set again is refused by its ExecutionStatus.
    let out = deploy(&moto, &[&common[..], &["--execute", &change_set, "--yes"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("its ExecutionStatus is EXECUTE_COMPLETE, not AVAILABLE"), "{stderr}");

    // The same for CI: one JSON document on stdout (the reviewed plan and the outcome),
    // progress on stderr.
    let out =
        deploy(&moto, &[&common[..], &["--yes", "--json", "--parameters", "AlarmEmail=ops@example.com"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(plan["stack"], STACK);
    assert!(plan["changeSet"].as_str().is_some_and(|c| !c.is_empty()), "{plan:#}");
    // moto does not evaluate conditions, so it lists no resource change for a new parameter
    // value (AWS would add the e-mail subscription): an executable change set with zero
    // resource changes, which must be executed all the same (the CDK CLI's old bug).
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan:#}");
    assert_eq!(plan["refused"], serde_json::json!([]));
    assert_eq!(plan["outcome"]["outcome"], "deployed");
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let parameters = deploy::cloudformation::deployed_parameters(&cfn, STACK).await.unwrap();
    assert_eq!(parameters["AlarmEmail"], "ops@example.com");
    // (moto reports no outputs after a change set; on AWS they are here.)
    assert!(plan["outcome"]["outputs"].is_object(), "{plan:#}");
    assert!(text(&out.stderr).contains("asset "), "progress goes to stderr: {}", text(&out.stderr));
    // Nothing to change: still one document.
    let out =
        deploy(&moto, &[&common[..], &["--yes", "--json", "--parameters", "AlarmEmail=ops@example.com"]].concat());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(again["outcome"], serde_json::json!({"outcome": "upToDate", "stack": STACK}));

    // A deploy that does not give AlarmEmail keeps it (the alarms still reach someone): with
    // nothing else changed it is up to date, and a new build keeps it too.
    let out = deploy(&moto, &[&common[..], &["--yes", "--json"]].concat());
    let kept: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(kept["outcome"], serde_json::json!({"outcome": "upToDate", "stack": STACK}), "{}", text(&out.stderr));
    support::fake_zips_of(zips.path(), "build 2");
    let out = deploy(&moto, &[&common[..], &["--yes", "--json"]].concat());
    let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(rebuilt["outcome"]["outcome"], "deployed", "{rebuilt:#}");
    let parameters = deploy::cloudformation::deployed_parameters(&cfn, STACK).await.unwrap();
    assert_eq!(parameters["AlarmEmail"], "ops@example.com", "kept: {parameters:?}");
    assert!(parameters["PublishMetricsCodeKey"].len() > 10, "the new build's key: {parameters:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_templates_go_through_s3() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
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
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
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
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
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
    let via = aws_sdk_s3::config::Builder::from(&config).endpoint_url(&endpoint).force_path_style(true).build();
    let denied = aws_sdk_s3::Client::from_conf(via);
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
/// REVIEW_IN_PROGRESS for a new one, no upload, no change set; `--fail-on` sets its exit
/// status as the offline diff's does; `--json` is one document on stdout, an error included.
#[tokio::test(flavor = "multi_thread")]
async fn the_online_diff_leaves_nothing_behind() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let lambda_dir = zips.path().to_str().unwrap();
    assert!(deploy(&moto, &["bootstrap", "--asset-bucket", BUCKET]).status.success());

    // No stack yet: everything is an addition, reviewed from the template alone.
    let diff = ["diff", "--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir];
    let out = deploy(&moto, &[&diff[..], &["--json", "--fail-on", "any-change"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["newStack"], true);
    assert!(doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["logicalResourceId"] == "MetricsTable" && c["action"] == "Add"));
    assert!(deploy(&moto, &[&diff[..], &["--fail-on", "destructive"]].concat()).status.success());
    assert!(cfn.describe_stacks().stack_name(STACK).send().await.is_err(), "no stack was created");
    assert!(objects(&s3).await.is_empty(), "nothing was uploaded");

    let first = ["--stack", "standalone", "--asset-bucket", BUCKET, "--lambda-dir", lambda_dir, "--yes"];
    assert!(deploy(&moto, &first).status.success());
    let uploaded = objects(&s3).await;
    let out = deploy(&moto, &[&diff[..], &["--fail-on", "any-change"]].concat());
    assert!(out.status.success(), "up to date: {}", text(&out.stdout));

    // New code: the functions change; the diff reviews a change set without uploading, with no
    // bucket given (the stack's own is kept), and deletes it.
    let v2 = tempfile::tempdir().unwrap();
    support::fake_zips_of(v2.path(), "v2");
    let out = deploy(
        &moto,
        &["diff", "--stack", "standalone", "--lambda-dir", v2.path().to_str().unwrap(), "--fail-on", "any-change"],
    );
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    // (moto's change set lists no resource for a parameter change; AWS lists both functions.)
    assert!(
        text(&out.stdout).contains(&format!("creating a change set for {STACK} (update)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(objects(&s3).await, uploaded, "nothing was uploaded");
    // (moto lists executed change sets still; AWS removes them once one is executed.)
    let change_sets = cfn.list_change_sets().stack_name(STACK).send().await.unwrap();
    let executed = Some(&aws_sdk_cloudformation::types::ExecutionStatus::ExecuteComplete);
    assert!(change_sets.summaries().iter().all(|c| c.execution_status() == executed), "{change_sets:?}");

    // An error under --json is a JSON document too.
    let out = deploy(&moto, &["--json", "--stack", "standalone", "--lambda-dir", lambda_dir, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(doc["error"].as_str().unwrap().contains("--asset-bucket is required"), "{doc}");
}
