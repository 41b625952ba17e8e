//! `cargo lambda build` builds both handlers for the stack's architecture (arm64) into
//! `<target>/lambda/<name>/bootstrap.zip`, and the packaged zips are byte-identical when the
//! binaries are rebuilt unchanged; where the machine can run them, `local` runs the workshop
//! with the zips' own bootstraps. cargo-lambda comes from the tools' venv; the aarch64 std
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

    the_deployed_bootstraps_run_the_workshop_where_this_machine_can(&lambda_dir);
}

/// Where this machine can run the deployed arm64 `bootstrap` (an arm64 host, binfmt, or
/// qemu-user with an aarch64 glibc), `local` runs the zips' own by default: here it runs the
/// workshop with them and counts exactly. Elsewhere the detection's reason is shown (its
/// cases are unit-tested in `local::artifact`).
fn the_deployed_bootstraps_run_the_workshop_where_this_machine_can(lambda_dir: &Path) {
    let arm64 = local::artifact::arm64();
    if let local::artifact::Arm64::Unavailable(why) = &arm64 {
        eprintln!("not run: the deployed bootstraps cannot run here: {why}");
        return;
    }
    let moto = support::moto::Moto::start();
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new(support::profile_dir().join("local"))
        .args(["--endpoint-url", &moto.endpoint, "--count", "20", "--completed", "2", "--time-scale", "0.05", "--json"])
        .arg("--lambda-dir")
        .arg(lambda_dir)
        .arg("--logs")
        .arg(logs.path())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let (stdout, stderr) = (support::text(&out.stdout), support::text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let said = format!("running the deployed arm64 bootstraps from {} {arm64}", lambda_dir.display());
    assert!(stderr.contains(&said), "says which build runs: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((summary["exact"].as_bool(), summary["sent"].as_u64()), (Some(true), Some(22)), "{summary:#}");
    assert_eq!(summary["tally"]["counted"], 22, "{summary:#}");
    // What ran is the zip's aarch64 binary (ELF e_machine 183, EM_AARCH64).
    for name in order_events::assets::ALL {
        let bootstrap = std::fs::read(lambda_dir.with_file_name("local-bootstrap").join(name)).unwrap();
        assert_eq!((&bootstrap[..4], &bootstrap[18..20]), (&b"\x7fELF"[..], &[183u8, 0][..]), "{name}");
    }
}
