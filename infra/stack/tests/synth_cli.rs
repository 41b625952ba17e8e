//! The `synth` binary: what it writes and prints, `--check`, `--out`, `--env`, and failures.

use std::path::Path;
use std::process::{Command, Output};

fn synth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synth")).current_dir(dir).args(args).output().expect("synth runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn writes_synth_out_and_prints_one_line_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.contains(": capacity: ")).collect();
    assert_eq!(lines.len(), 9, "{stdout}");
    for name in [
        "serverlesspresso-metrics.template.yaml",
        "serverlesspresso-metrics.template.json",
        "serverlesspresso-metrics-standalone.template.yaml",
        "serverlesspresso-metrics-standalone.template.json",
    ] {
        let path = dir.path().join("synth-out").join(name);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let line = lines.iter().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} in {stdout}"));
        assert!(line.starts_with("wrote synth-out/"), "{line}");
        assert!(line.ends_with(&format!("resources, {bytes} bytes)")), "{line}");
    }
    for detail_type in ["WaitingCompletion", "OrderCompleted", "OrderCancelled"] {
        let name = format!("OrderManager.{detail_type}.schema.json");
        let line = lines.iter().find(|l| l.contains(&name)).unwrap_or_else(|| panic!("{name} in {stdout}"));
        assert!(line.contains("(JSON Schema, "), "{line}");
        let schema: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("synth-out").join(&name)).unwrap()).unwrap();
        assert_eq!(schema["title"], format!("OrderManager.{detail_type} detail"));
    }
    // Again: every file is already current, and none is rewritten.
    let again = synth(dir.path(), &[]);
    let stdout = text(&again.stdout);
    let files: Vec<&str> = stdout.lines().filter(|l| !l.contains(": capacity: ")).collect();
    assert_eq!(files.len(), 9, "{stdout}");
    assert!(files.iter().all(|l| l.starts_with("unchanged synth-out/")), "{stdout}");
}

#[test]
fn prints_each_stacks_capacity_and_warns_of_throttled_batches() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for stack in ["serverlesspresso-metrics", "serverlesspresso-metrics-standalone"] {
        let line = format!(
            "{stack}: capacity: 5 WCU, 2.80 WCU per order, 1.8 orders/s sustained, 500 orders drain in 4 min 40 s (queue-age alarm at 15 min)"
        );
        assert!(stdout.lines().any(|l| l == line), "{line}\nin\n{stdout}");
    }
    // Reserved concurrency 1 under the mapping's five first batches: said on stderr, once per stack.
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains("`PublishMetrics` has reserved concurrency 1, below the 5 concurrent batches"),
        "{stderr}"
    );
    assert!(warnings[0].contains("invocations beyond 1 are throttled"), "{stderr}");
}

#[test]
fn check_passes_when_current_and_names_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = synth(dir.path(), &["--check"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("(Missing)"), "{}", text(&missing.stderr));
    assert!(!dir.path().join("synth-out").exists(), "--check writes nothing");

    assert!(synth(dir.path(), &[]).status.success());
    let ok = synth(dir.path(), &["--check"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("up to date (9 files)"));

    let edited = dir.path().join("synth-out/serverlesspresso-metrics.template.json");
    std::fs::write(&edited, "{}").unwrap();
    let stale = synth(dir.path(), &["--check"]);
    assert_eq!(stale.status.code(), Some(1));
    let err = text(&stale.stderr);
    assert!(err.contains("serverlesspresso-metrics.template.json (Differs)"), "{err}");
    assert!(!err.contains("standalone"), "only the stale file is named: {err}");
    assert!(err.contains("cargo run --bin synth"), "{err}");
}

#[test]
fn out_and_env_choose_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), &["--out", "custom", "--env", "staging"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("custom"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["serverlesspresso-metrics-staging.template.json", "serverlesspresso-metrics-staging.template.yaml"]
    );
}

#[test]
fn env_defaults_to_its_own_directory_and_leaves_synth_out_alone() {
    let dir = tempfile::tempdir().unwrap();
    assert!(synth(dir.path(), &[]).status.success());
    let out = synth(dir.path(), &["--env", "staging"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("synth-out/staging/serverlesspresso-metrics-staging.template.yaml").exists());
    assert!(synth(dir.path(), &["--check"]).status.success(), "the default output is untouched");
}

#[test]
fn another_environment_creates_its_own_bus_or_imports_one_by_name_but_never_productions() {
    let dir = tempfile::tempdir().unwrap();
    let read = |dir: &std::path::Path| {
        let path = dir.join("synth-out/staging/serverlesspresso-metrics-staging.template.json");
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert!(synth(dir.path(), &["--env", "staging"]).status.success());
    let t = read(dir.path());
    assert_eq!(t["Resources"]["EventBus"]["Properties"]["Name"], "Serverlesspresso-staging");

    let out = synth(dir.path(), &["--env", "staging", "--import-bus", "Shared-staging"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = read(dir.path());
    assert!(t["Resources"].get("EventBus").is_none());
    assert_eq!(t["Resources"]["OrderMetricsRule"]["Properties"]["EventBusName"], "Shared-staging");

    let clean = tempfile::tempdir().unwrap();
    let out = synth(clean.path(), &["--env", "staging", "--import-bus", "Serverlesspresso"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("never imports the production bus") && err.contains("nothing was written"), "{err}");
    assert!(!clean.path().join("synth-out").exists());
    let out = synth(clean.path(), &["--import-bus", "Shared-staging"]);
    assert_eq!(out.status.code(), Some(2), "--import-bus needs --env");
}

#[test]
fn a_validation_error_exits_non_zero_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), &["--env", "not valid"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("StackName = \"serverlesspresso-metrics-not valid\" is invalid"), "{err}");
    assert!(!dir.path().join("synth-out").exists());
}

/// A directory holding a stand-in `dot` that records its arguments and writes the output file.
fn fake_graphviz() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dot = dir.path().join("dot");
    let calls = dir.path().join("calls");
    // Only shell built-ins: the tests run it with nothing else on PATH.
    std::fs::write(&dot, format!("#!/bin/sh\necho \"$@\" >> '{}'\nprintf '<svg/>' > \"$4\"\n", calls.display()))
        .unwrap();
    std::fs::set_permissions(&dot, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn render_runs_graphviz_on_each_diagram() {
    let dir = tempfile::tempdir().unwrap();
    let graphviz = fake_graphviz();
    let out = Command::new(env!("CARGO_BIN_EXE_synth"))
        .current_dir(dir.path())
        .arg("--render")
        .env("PATH", graphviz.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = std::fs::read_to_string(graphviz.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), 2, "{calls}");
    assert!(
        calls.contains("-Tsvg synth-out/serverlesspresso-metrics.dot -o synth-out/serverlesspresso-metrics.svg"),
        "{calls}"
    );
    assert!(dir.path().join("synth-out/serverlesspresso-metrics-standalone.svg").exists());
    assert!(text(&out.stdout).contains("rendered synth-out/serverlesspresso-metrics.svg"));
}

#[test]
fn render_without_graphviz_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_synth"))
        .current_dir(dir.path())
        .arg("--render")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("apt-get install graphviz"), "{}", text(&out.stderr));
    assert!(dir.path().join("synth-out/serverlesspresso-metrics.dot").exists(), "the .dot files are still written");
}
