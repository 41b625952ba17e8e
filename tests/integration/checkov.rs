//! The policy scan: checkov (pinned in tests/requirements-checkov.txt) over every synthesized
//! template finds nothing that is neither fixed nor acknowledged in the stack, and every
//! acknowledgement answers a finding the scan still makes.

use test_support as support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use metrics_stack::{metrics_stack, MetricsStackProps};

/// `(check, resource logical ID)` pairs.
type Findings = BTreeSet<(String, String)>;

/// Runs checkov on the templates in `dir`; returns the failed and the skipped checks.
fn scan(dir: &Path) -> (Findings, Findings) {
    let out = Command::new(support::checkov())
        .args(["--skip-download", "--framework", "cloudformation", "--output", "json", "--directory"])
        .arg(dir)
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("checkov runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("checkov printed no JSON ({e}):\n{}\n{}", support::text(&out.stdout), support::text(&out.stderr))
    });
    // One report per framework, or the report itself when there is one.
    let reports = match report {
        serde_json::Value::Array(reports) => reports,
        one => vec![one],
    };
    let mut failed = Findings::new();
    let mut skipped = Findings::new();
    for report in &reports {
        for (kind, into) in [("failed_checks", &mut failed), ("skipped_checks", &mut skipped)] {
            for c in report["results"][kind].as_array().into_iter().flatten() {
                let resource = c["resource"].as_str().unwrap_or_default();
                // `AWS::Lambda::Function.PublishMetrics`: the logical ID after the type.
                let id = resource.rsplit('.').next().unwrap_or(resource).to_owned();
                into.insert((c["check_id"].as_str().unwrap_or_default().to_owned(), id));
            }
        }
    }
    (failed, skipped)
}

/// The templates the tests synthesize: the app's two stacks and another environment's.
fn stacks() -> Vec<cfn::constructs::Stack> {
    let mut stacks: Vec<_> = metrics_stack::app()
        .expect("the app's stacks are valid")
        .into_iter()
        .map(metrics_stack::MetricsStack::into_stack)
        .collect();
    stacks.push(metrics_stack(&MetricsStackProps::for_environment("staging", None).unwrap()).unwrap().into_stack());
    stacks
}

fn write(dir: &Path, templates: &[(String, serde_json::Value)]) -> Vec<PathBuf> {
    templates
        .iter()
        .map(|(name, t)| {
            let path = dir.join(format!("{name}.template.json"));
            std::fs::write(&path, serde_json::to_string_pretty(t).unwrap()).unwrap();
            path
        })
        .collect()
}

fn rendered(stack: &cfn::constructs::Stack) -> serde_json::Value {
    serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap()
}

/// What each stack acknowledges, as `(check, logical ID)`, read from its typed record.
fn acknowledged(stacks: &[cfn::constructs::Stack]) -> Findings {
    stacks
        .iter()
        .flat_map(|s| s.acknowledgements().iter())
        .flat_map(|(id, acks)| acks.iter().map(move |a| (a.check.clone(), id.to_string())))
        .collect()
}

#[test]
fn every_template_passes_the_scan_and_every_acknowledgement_is_needed() {
    let stacks = stacks();
    let acknowledged = acknowledged(&stacks);
    assert!(!acknowledged.is_empty());

    // As synthesized: nothing fails; what is skipped is exactly what the stacks acknowledge.
    let dir = tempfile::tempdir().unwrap();
    let templates: Vec<_> = stacks.iter().map(|s| (s.name().to_owned(), rendered(s))).collect();
    write(dir.path(), &templates);
    let (failed, skipped) = scan(dir.path());
    assert_eq!(failed, Findings::new(), "findings neither fixed nor acknowledged");
    assert_eq!(skipped, acknowledged, "what the scan skipped vs what the stacks acknowledge");

    // The control, and no stale acknowledgement: without the acknowledgements, the scan fails
    // exactly what they cover.
    let bare = tempfile::tempdir().unwrap();
    let stripped: Vec<_> = templates
        .iter()
        .map(|(name, t)| {
            let mut t = t.clone();
            for resource in t["Resources"].as_object_mut().unwrap().values_mut() {
                if let Some(metadata) = resource.get_mut("Metadata").and_then(|m| m.as_object_mut()) {
                    metadata.remove("checkov");
                }
            }
            (name.clone(), t)
        })
        .collect();
    write(bare.path(), &stripped);
    let (failed, skipped) = scan(bare.path());
    assert_eq!(skipped, Findings::new());
    assert_eq!(failed, acknowledged, "the scan's findings without acknowledgements");
}

/// The fixes stay fixed: a template without them is reported.
#[test]
fn the_scan_reports_what_the_constructs_fixed() {
    let stack = metrics_stack(&MetricsStackProps::standalone()).unwrap().into_stack();
    let mut t = rendered(&stack);
    // Bypass the constructs to write what checkov must catch.
    t["Resources"]["EventsLoadTest"]["Properties"].as_object_mut().unwrap().remove("ReservedConcurrentExecutions");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("broken".to_owned(), t)]);
    let (failed, _) = scan(dir.path());
    assert_eq!(failed, Findings::from([("CKV_AWS_115".to_owned(), "EventsLoadTest".to_owned())]));
}
