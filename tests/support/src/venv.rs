//! The pinned Python tools' virtual environments: where each lives and how it is installed.
//! Shared by the tests (which install on first use) and this crate's build script (which
//! installs while the tests compile), so both agree on places, pins and the lock.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One virtual environment of pinned tools.
pub struct Venv {
    /// Overrides the place.
    pub override_var: &'static str,
    /// The directory's name under `<target>/tmp`.
    pub name: &'static str,
    /// The pins, relative to the workspace root.
    pub requirements: &'static str,
}

/// cfn-lint, moto, cargo-lambda, awscli.
pub const TOOLS: Venv =
    Venv { override_var: "SERVERLESSPRESSO_VENV", name: "tools-venv", requirements: "tests/requirements.txt" };

/// checkov, alone: it pins a boto3 that moto and awscli do not accept.
pub const CHECKOV: Venv = Venv {
    override_var: "SERVERLESSPRESSO_CHECKOV_VENV",
    name: "checkov-venv",
    requirements: "tests/requirements-checkov.txt",
};

impl Venv {
    /// Where the environment is for the target directory `target`.
    pub fn dir(&self, target: &Path) -> PathBuf {
        std::env::var_os(self.override_var).map(PathBuf::from).unwrap_or_else(|| target.join("tmp").join(self.name))
    }

    /// Installs the pins into `dir` unless the stamp there says they already are. A file lock
    /// beside it makes every other caller (another test binary, the build script) wait for the
    /// one installing.
    pub fn ensure(&self, dir: &Path, workspace_root: &Path) -> Result<(), String> {
        let requirements_path = workspace_root.join(self.requirements);
        let requirements =
            fs::read_to_string(&requirements_path).map_err(|e| format!("{}: {e}", requirements_path.display()))?;
        let parent = dir.parent().ok_or("the venv path has no parent")?;
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let lock_path = dir.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

        let stamp = dir.join(".requirements.txt");
        if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
            return Ok(());
        }
        eprintln!("installing the test tools of {} into {} ...", requirements_path.display(), dir.display());
        if !dir.join("bin/pip").exists() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(dir),
                "python3 -m venv (is python3 with venv installed?)",
            )?;
        }
        run(
            Command::new(dir.join("bin/pip"))
                .args(["install", "--disable-pip-version-check", "--quiet", "-r"])
                .arg(&requirements_path),
            "pip install -r",
        )?;
        fs::write(&stamp, requirements).map_err(|e| format!("{}: {e}", stamp.display()))?;
        Ok(())
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv(requirements: &'static str) -> Venv {
        Venv { override_var: "TEST_SUPPORT_UNUSED", name: "v", requirements }
    }

    #[test]
    fn a_matching_stamp_means_installed_and_missing_pins_are_named() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("tests")).unwrap();
        fs::write(root.path().join("tests/pins.txt"), "nothing-installable==0\n").unwrap();
        let dir = root.path().join("target/tmp/v");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".requirements.txt"), "nothing-installable==0\n").unwrap();
        // pip would fail on this pin: Ok means the stamp was read and nothing ran.
        venv("tests/pins.txt").ensure(&dir, root.path()).unwrap();
        assert!(dir.with_extension("lock").exists());
        assert_eq!(venv("tests/pins.txt").dir(&root.path().join("target")), dir);

        let err = venv("tests/missing.txt").ensure(&dir, root.path()).unwrap_err();
        assert!(err.contains("tests/missing.txt"), "{err}");
    }
}
