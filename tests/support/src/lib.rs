//! Helpers shared by the integration tests: the workspace root, the synthesized artifacts, and
//! the pinned Python tools in their virtual environments (installed while the tests compile,
//! by `build.rs`, or else on first use).

pub mod aws;
pub mod moto;
pub mod proxy;
mod venv;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the directory with Cargo.lock).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().find(|p| p.join("Cargo.lock").exists()).unwrap_or(here).to_owned()
}

/// Stand-ins for the Lambda zips in `dir` (`<name>/bootstrap.zip`): an arm64 ELF header, enough
/// for `assets` and for moto, which stores functions but never runs them. The real zips are
/// built and checked by `tests/integration/arm64_build.rs`.
pub fn fake_zips(dir: &Path) {
    fake_zips_of(dir, "")
}

/// [`fake_zips`] whose bytes also hold `build` (another build of the same code: new keys).
pub fn fake_zips_of(dir: &Path, build: &str) {
    use std::io::Write;
    for name in order_events::assets::ALL {
        let path = dir.join(name).join("bootstrap.zip");
        fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(18, 0);
        elf.extend(0xb7u16.to_le_bytes());
        elf.extend(name.as_bytes());
        elf.extend(build.as_bytes());
        let mut w = zip::ZipWriter::new(File::create(&path).expect("a file"));
        w.start_file("bootstrap", zip::write::SimpleFileOptions::default().unix_permissions(0o755)).expect("an entry");
        w.write_all(&elf).expect("written");
        w.finish().expect("a zip");
    }
}

/// Runs one of the deploy crate's binaries (`binary`, from `env!("CARGO_BIN_EXE_...")`) against
/// the local `endpoint` with test credentials, echoing what it printed.
pub fn run_against(binary: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    let out = with_test_credentials(Command::new(binary).args(args).args([
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
    ]))
    .output()
    .expect("the binary runs");
    eprintln!("$ {} {}\n{}{}", binary.display(), args.join(" "), text(&out.stdout), text(&out.stderr));
    out
}

/// `cmd` with the tests' credentials and region (us-east-1) for a local endpoint, and no
/// profile of the machine's.
pub fn with_test_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
}

/// `aws lambda invoke` from the tools' venv at `endpoint`, with the tests' credentials.
pub fn aws_lambda_invoke(endpoint: &str) -> Command {
    let mut cmd = Command::new(tool("aws"));
    cmd.args(["lambda", "invoke", "--endpoint-url", endpoint]);
    with_test_credentials(&mut cmd);
    cmd
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The app's artifacts, as `synth` writes them into `synth-out/`.
pub fn artifacts() -> Vec<cfn::synth::Artifact> {
    metrics_stack::app_artifacts().expect("the app's stacks are valid")
}

/// The templates among them, YAML then JSON for each stack.
pub fn templates() -> Vec<cfn::synth::Artifact> {
    artifacts().into_iter().filter(|a| a.resources.is_some()).collect()
}

/// The cargo target directory of the running test: its executable is `<target>/<profile>/deps/<name>`.
/// Where this test's profile puts binaries (`target/debug`): the workspace's bins and examples
/// are built there by the same `cargo test` run.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.ancestors().nth(2).map(Path::to_path_buf).expect("tests run from <target>/<profile>/deps")
}

/// A handler's bootstrap built for this machine by `cargo test --workspace` (the README's
/// command builds every package's binaries for its integration tests).
pub fn handler_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace), which build it",
        path.display()
    );
    path
}

pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| workspace_root().join("target"))
}

/// The virtual environment holding the tools of `tests/requirements.txt`. Shared by every test
/// binary (a file lock keeps them from installing at once); kept in the target directory, so a
/// cached target directory also caches the tools. `SERVERLESSPRESSO_VENV` overrides the place.
/// This crate's build script installs it while the tests compile; this installs it if that
/// could not (no network then, say) or the environment was removed since.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| prepared(&venv::TOOLS))
}

/// checkov's own virtual environment (`tests/requirements-checkov.txt`): checkov pins a boto3
/// that moto and awscli do not accept. `SERVERLESSPRESSO_CHECKOV_VENV` overrides the place.
pub fn checkov() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| prepared(&venv::CHECKOV)).join("bin/checkov")
}

fn prepared(v: &venv::Venv) -> PathBuf {
    let dir = v.dir(&target_dir());
    if let Err(e) = v.ensure(&dir, &workspace_root()) {
        panic!("cannot prepare the test tools in {}: {e}", dir.display());
    }
    dir
}

/// The data cfn-lint ships (provider schemas, stateful types), in the tools' venv.
pub fn cfn_lint_data() -> PathBuf {
    let lib = venv().join("lib");
    let python = fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))
        .unwrap_or_else(|| panic!("no python directory in {}", lib.display()));
    python.path().join("site-packages/cfnlint/data")
}

/// Path of `tool` in the tools' virtual environment.
pub fn tool(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}
