//! `deploy diff --from`, black-box: the offline layer needs no AWS (its endpoint here is a
//! closed local port, so any call would fail), and its exit status follows `--fail-on`.

use std::path::Path;
use std::process::{Command, Output};

use test_support::text;

fn diff(old: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["diff", "--from"])
        .arg(old)
        .args(args)
        .args(["--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"])
        .env_remove("AWS_PROFILE")
        .output()
        .expect("deploy runs");
    eprintln!("$ deploy diff {}\n{}{}", args.join(" "), text(&out.stdout), text(&out.stderr));
    out
}

/// The workshop stack's synthesized template, edited by `f`, written to a file.
fn old_template(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
    let mut t: serde_json::Value = serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap();
    f(&mut t);
    let path = dir.join("old.template.json");
    std::fs::write(&path, t.to_string()).unwrap();
    path
}

#[test]
fn the_offline_diff_stops_a_destructive_change_before_anyone_has_credentials() {
    let dir = tempfile::tempdir().unwrap();
    // The committed synth-out is what main deploys: no change.
    let committed = test_support::workspace_root().join("synth-out/serverlesspresso-metrics.template.yaml");
    let out = diff(&committed, &["--fail-on", "destructive"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no changes"), "{}", text(&out.stdout));

    // Main kept messages 14 days; this branch keeps 4: SQS would delete the older ones.
    let longer = old_template(dir.path(), |t| {
        t["Resources"]["MetricsQueue"]["Properties"]["MessageRetentionPeriod"] = 1_209_600.into()
    });
    let out = diff(&longer, &["--fail-on", "destructive"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("destructive: MetricsQueue (AWS::SQS::Queue): MessageRetentionPeriod shortened"),
        "{stdout}"
    );
    // Without --fail-on it reports and succeeds.
    assert!(diff(&longer, &[]).status.success());

    // A harmless change passes --fail-on destructive, not --fail-on any-change.
    let smaller = old_template(dir.path(), |t| {
        t["Resources"]["MetricsTable"]["Properties"]["ProvisionedThroughput"]["WriteCapacityUnits"] = 2.into()
    });
    assert!(diff(&smaller, &["--fail-on", "destructive"]).status.success());
    assert_eq!(diff(&smaller, &["--fail-on", "any-change"]).status.code(), Some(1));

    // A renamed table is a replacement; --json says so.
    let renamed =
        old_template(dir.path(), |t| t["Resources"]["MetricsTable"]["Properties"]["TableName"] = "metrics-v1".into());
    let out = diff(&renamed, &["--json", "--fail-on", "destructive"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert!(changes.contains(&serde_json::json!({"action": "Modify", "logicalResourceId": "MetricsTable",
            "resourceType": "AWS::DynamoDB::Table", "replacement": "True"})));
    assert_eq!(v["refused"][0]["logicalResourceId"], "MetricsTable");
    assert!(v["refused"][0]["why"].as_str().unwrap().contains("replaced"));
    // What reads the table's name or ARN changes with it.
    let out = diff(&renamed, &[]);
    assert!(
        text(&out.stdout).contains("PublishMetricsRole.Policies follows MetricsTable.Arn"),
        "{}",
        text(&out.stdout)
    );

    // Only an output differs: not destructive, but a change.
    let output = old_template(dir.path(), |t| t["Outputs"]["EventBusName"]["Description"] = "old words".into());
    assert!(diff(&output, &["--fail-on", "destructive"]).status.success());
    let out = diff(&output, &["--fail-on", "any-change"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("Modify  Outputs EventBusName"), "{}", text(&out.stdout));

    // Not a template: a clear error.
    let junk = dir.path().join("junk.yaml");
    std::fs::write(&junk, ": : :").unwrap();
    let out = diff(&junk, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not a YAML or JSON template"), "{}", text(&out.stderr));
}
