//! Installs the tests' pinned Python tools (moto, cfn-lint, cargo-lambda, awscli; checkov) while
//! cargo compiles the tests, instead of in the first test that needs them: on a fresh machine
//! that is about two minutes of downloads and unpacking taken off the test run. Never fails the
//! build: without network it warns, and the tests install (or say what is missing) themselves.

#[path = "src/venv.rs"]
mod venv;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/venv.rs");
    for v in [&venv::TOOLS, &venv::CHECKOV] {
        println!("cargo:rerun-if-changed=../../{}", v.requirements);
        println!("cargo:rerun-if-env-changed={}", v.override_var);
    }
    let (Some(out), Some(manifest)) = (std::env::var_os("OUT_DIR"), std::env::var_os("CARGO_MANIFEST_DIR")) else {
        return;
    };
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out, as the tests find <target> from
    // their own path (<target>/<profile>/deps/<test>).
    let Some(target) = PathBuf::from(out).ancestors().nth(4).map(PathBuf::from) else { return };
    let root = PathBuf::from(manifest).join("../..");
    std::thread::scope(|s| {
        for v in [&venv::TOOLS, &venv::CHECKOV] {
            let (target, root) = (&target, &root);
            s.spawn(move || {
                let dir = v.dir(target);
                if let Err(e) = v.ensure(&dir, root) {
                    println!("cargo:warning=the tests will install {} themselves: {e}", dir.display());
                }
            });
        }
    });
}
