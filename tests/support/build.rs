//! Installs the tests' pinned Python tools (moto, cfn-lint, cargo-lambda, awscli; checkov) while
//! cargo compiles the tests, instead of in the first test that needs them: on a fresh machine
//! that is one to two minutes of downloads and unpacking taken off the test run.
//!
//! The build script only starts the install, as a detached copy of itself, and returns: cargo
//! counts a running build script as one of its jobs and compiles nothing that depends on this
//! crate until it ends, so waiting here would lengthen the build by what it takes off the
//! tests. The install holds the venv's lock; a test that needs a tool waits on that lock, then
//! finds the stamp (or, if the install failed, installs itself and says what went wrong). Its
//! output goes to `<venv>.install.log`.

#[path = "src/venv.rs"]
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set on the detached copy: install into the venvs under this target directory.
const INSTALL_INTO: &str = "TEST_SUPPORT_INSTALL_INTO";

fn main() {
    // tests/support -> the workspace root.
    let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2) else { return };
    if let Some(target) = std::env::var_os(INSTALL_INTO) {
        return install(Path::new(&target), root);
    }
    println!("cargo:rerun-if-changed=src/venv.rs");
    for v in [&venv::TOOLS, &venv::CHECKOV] {
        println!("cargo:rerun-if-changed=../../{}", v.requirements);
        println!("cargo:rerun-if-env-changed={}", v.override_var);
    }
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out, as the tests find <target> from
    // their own path (<target>/<profile>/deps/<test>).
    let Some(out) = std::env::var_os("OUT_DIR") else { return };
    let Some(target) = PathBuf::from(out).ancestors().nth(4).map(PathBuf::from) else { return };
    let log = venv::TOOLS.dir(&target).with_extension("install.log");
    let started = std::fs::create_dir_all(log.parent().unwrap_or(&target))
        .and_then(|()| std::fs::File::create(&log))
        .and_then(|file| {
            Command::new(std::env::current_exe()?)
                .env(INSTALL_INTO, &target)
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
        });
    if let Err(e) = started {
        println!("cargo:warning=the tests will install their tools themselves ({}): {e}", log.display());
    }
}

fn install(target: &Path, root: &Path) {
    std::thread::scope(|s| {
        for v in [&venv::TOOLS, &venv::CHECKOV] {
            s.spawn(move || {
                let dir = v.dir(target);
                match v.ensure(&dir, root) {
                    Ok(()) => eprintln!("{} is ready", dir.display()),
                    Err(e) => eprintln!("{}: {e} (the tests will try again)", dir.display()),
                }
            });
        }
    });
}
