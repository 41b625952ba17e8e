//! Every synthesized template passes cfn-lint (pinned in tests/requirements.txt) with no error,
//! warning or informational finding.

use test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs cfn-lint on `files`; returns its exit code and its JSON findings.
fn cfn_lint(files: &[PathBuf]) -> (i32, serde_json::Value) {
    let out = Command::new(support::tool("cfn-lint"))
        .args(["--format", "json", "--"])
        .args(files)
        .output()
        .expect("cfn-lint runs");
    let findings = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "cfn-lint printed no JSON:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), findings)
}

fn write(dir: &Path, artifacts: &[cfn::synth::Artifact]) -> Vec<PathBuf> {
    cfn::synth::write(dir, artifacts).expect("writes").into_iter().map(|w| w.path).collect()
}

#[test]
fn every_synthesized_template_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(dir.path(), &support::templates());
    assert_eq!(files.len(), 4);
    let env =
        metrics_stack::metrics_stack(&metrics_stack::MetricsStackProps::for_environment("staging", None).unwrap())
            .unwrap();
    let mut files = files;
    files.extend(write(&dir.path().join("staging"), &cfn::synth::artifacts(&[env.into_stack()]).unwrap()));
    let (code, findings) = cfn_lint(&files);
    assert_eq!(findings, serde_json::json!([]), "cfn-lint findings");
    assert_eq!(code, 0);
}

/// The check above can fail: a template AWS would reject is reported.
#[test]
fn the_linter_reports_a_broken_template() {
    let dir = tempfile::tempdir().unwrap();
    let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
    let mut template: serde_json::Value =
        serde_json::from_str(&stack.to_template().unwrap().to_json().unwrap()).unwrap();
    // Bypass the construct's validation to write what cfn-lint must catch.
    template["Resources"]["PublishMetricsQueueMapping"]["Properties"]["BatchSize"] = 20_000.into();
    let path = dir.path().join("broken.template.json");
    std::fs::write(&path, serde_json::to_string_pretty(&template).unwrap()).unwrap();
    let (code, findings) = cfn_lint(&[path]);
    assert_ne!(code, 0);
    let rules: Vec<&str> = findings.as_array().unwrap().iter().filter_map(|f| f["Rule"]["Id"].as_str()).collect();
    assert!(rules.contains(&"E3034"), "{findings:#}");
}

/// The guard's stateful resource types are the list the pinned cfn-lint ships.
#[test]
fn the_guards_stateful_types_are_cfn_lints() {
    let path = support::cfn_lint_data().join("AdditionalSpecs/StatefulResources.json");
    let shipped: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let shipped: Vec<&str> = shipped["ResourceTypes"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut ours = deploy::guard::STATEFUL_TYPES.to_vec();
    ours.sort_unstable();
    let mut theirs = shipped.clone();
    theirs.sort_unstable();
    assert_eq!(ours, theirs, "update deploy::guard::STATEFUL_TYPES from {}", path.display());
}

/// The offline diff's create-only properties cover every create-only property the provider
/// schemas of the pinned cfn-lint list for each emitted type.
#[test]
fn the_offline_diffs_create_only_table_covers_the_provider_schemas() {
    let schemas = support::cfn_lint_data().join("schemas");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schemas.join("providers/us-east-1.json")).unwrap()).unwrap();
    for (resource_type, ours) in deploy::offline::CREATE_ONLY {
        let file = index[resource_type].as_str().unwrap_or_else(|| panic!("no provider schema for {resource_type}"));
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schemas.join(format!("resources/{file}.json"))).unwrap())
                .unwrap();
        for path in schema["createOnlyProperties"].as_array().into_iter().flatten() {
            let property = path.as_str().unwrap().trim_start_matches("/properties/");
            let top = property.split('/').next().unwrap();
            assert!(
                ours.contains(&top),
                "{resource_type}: create-only {property} is missing from deploy::offline::CREATE_ONLY"
            );
        }
    }
}
