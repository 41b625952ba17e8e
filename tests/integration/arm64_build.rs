//! `cargo lambda build` builds both handlers for the stack's architecture (arm64) into
//! `<target>/lambda/<name>/bootstrap.zip`, and the packaged zips are byte-identical when the
//! binaries are rebuilt unchanged. cargo-lambda comes from the tools' venv; the aarch64 std
//! from rustup. Slow the first time (a release build), quick after.

use test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_owned()
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Builds into `<target>/lambda` while compiling in `<target>/lambda-build`, so this inner
/// cargo never waits on the lock of the outer `cargo test`.
fn cargo_lambda_build(lambda_dir: &Path) {
    let path = format!("{}:{}", support::venv().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    run(
        Command::new(support::tool("cargo-lambda"))
            .args(["lambda", "build", "--release", "--arm64", "--output-format", "zip", "--lambda-dir"])
            .arg(lambda_dir)
            .args(order_events::assets::ALL.iter().flat_map(|name| ["-p", name]))
            .current_dir(support::workspace_root())
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", target_dir().join("lambda-build")),
        "cargo lambda build",
    );
}

#[test]
fn handlers_build_into_reproducible_zips() {
    run(Command::new("rustup").args(["target", "add", "aarch64-unknown-linux-gnu"]), "rustup target add");
    let lambda_dir = target_dir().join("lambda");
    let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
    let assets = deploy::assets::assets_of(stack.functions());
    assert_eq!(assets.len(), 2);

    cargo_lambda_build(&lambda_dir);
    let first: Vec<_> = assets.iter().map(|a| deploy::assets::package(a, &lambda_dir).expect("packaged")).collect();
    for p in &first {
        eprintln!("{}: {} bytes, sha256 {}", p.path.display(), p.bytes, p.sha256);
        assert!(p.bytes > 100_000 && p.bytes < 30_000_000, "{} bytes", p.bytes);
    }

    // A rebuild gives the binaries new modification times, which cargo-lambda copies into its
    // zips; packaging must still give the same bytes.
    let bins = target_dir().join("lambda-build/aarch64-unknown-linux-gnu/release");
    for a in &assets {
        let bin = bins.join(&a.name);
        let f = std::fs::File::options().append(true).open(&bin).expect("the built binary");
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
    cargo_lambda_build(&lambda_dir);
    let second: Vec<_> = assets.iter().map(|a| deploy::assets::package(a, &lambda_dir).expect("packaged")).collect();
    assert_eq!(first, second);
}
