//! Which build of a handler the local run executes: the deployed arm64 `bootstrap` from the
//! release zip where this machine can run it (an arm64 Linux host, or qemu-user registered
//! with the kernel's binfmt_misc), otherwise a build for this machine from the same sources
//! (which differs from what is deployed: target, optimizations, overflow checks, speed).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::LocalError;

/// Whether this machine can run the deployed arm64 Linux `bootstrap`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arm64 {
    /// An arm64 Linux host.
    Native,
    /// Under qemu-user, which binfmt_misc starts for arm64 binaries.
    Emulated { interpreter: String },
    /// Not here, and why.
    Unavailable(String),
}

impl fmt::Display for Arm64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arm64::Native => f.write_str("natively, on this arm64 Linux host"),
            Arm64::Emulated { interpreter } => write!(f, "under {interpreter} (binfmt_misc)"),
            Arm64::Unavailable(why) => f.write_str(why),
        }
    }
}

/// What this machine offers.
pub fn arm64() -> Arm64 {
    arm64_in(std::env::consts::OS, std::env::consts::ARCH, Path::new("/proc/sys/fs/binfmt_misc"))
}

/// What a machine running `os` on `arch`, with binfmt_misc entries in `binfmt`, offers.
pub fn arm64_in(os: &str, arch: &str, binfmt: &Path) -> Arm64 {
    if os != "linux" {
        return Arm64::Unavailable(format!("the deployed bootstrap is a Linux binary and this machine runs {os}"));
    }
    if arch == "aarch64" {
        return Arm64::Native;
    }
    // An entry is "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: ...".
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(binfmt).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    for entry in entries {
        let is_aarch64 = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("qemu-aarch64"));
        let Ok(text) = std::fs::read_to_string(&entry) else { continue };
        if !is_aarch64 || text.lines().next() != Some("enabled") {
            continue;
        }
        if let Some(interpreter) = text.lines().find_map(|l| l.strip_prefix("interpreter ")) {
            return Arm64::Emulated { interpreter: interpreter.trim().to_owned() };
        }
    }
    Arm64::Unavailable(format!("this machine is {arch} with no enabled qemu-aarch64 handler in {}", binfmt.display()))
}

/// Writes the `bootstrap` of each handler's release zip (`<lambda_dir>/<name>/bootstrap.zip`)
/// to `<into>/<name>`, executable.
pub fn extract_bootstraps(lambda_dir: &Path, names: &[&str], into: &Path) -> Result<(), LocalError> {
    let fail = |path: &Path, why: String| LocalError::Artifact(format!("{}: {why}", path.display()));
    std::fs::create_dir_all(into).map_err(|e| fail(into, e.to_string()))?;
    for name in names {
        let zip_path = lambda_dir.join(name).join("bootstrap.zip");
        let file = std::fs::File::open(&zip_path).map_err(|e| {
            fail(&zip_path, format!("{e} (build it with `cargo lambda build --release --arm64 --output-format zip`)"))
        })?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| fail(&zip_path, e.to_string()))?;
        let mut entry = archive.by_name("bootstrap").map_err(|e| fail(&zip_path, format!("no bootstrap: {e}")))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| fail(&zip_path, e.to_string()))?;
        let out = into.join(name);
        std::fs::write(&out, bytes).map_err(|e| fail(&out, e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail(&out, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_hosts_run_it_natively_and_others_need_an_enabled_qemu_handler() {
        let binfmt = tempfile::tempdir().unwrap();
        assert_eq!(arm64_in("linux", "aarch64", binfmt.path()), Arm64::Native);
        let none = arm64_in("linux", "x86_64", binfmt.path());
        assert!(
            matches!(&none, Arm64::Unavailable(why) if why.contains("x86_64 with no enabled qemu-aarch64")),
            "{none}"
        );
        std::fs::write(binfmt.path().join("qemu-aarch64"), "disabled\ninterpreter /usr/bin/qemu-aarch64\n").unwrap();
        assert!(matches!(arm64_in("linux", "x86_64", binfmt.path()), Arm64::Unavailable(_)), "a disabled handler");
        std::fs::write(binfmt.path().join("qemu-arm"), "enabled\ninterpreter /usr/bin/qemu-arm\n").unwrap();
        assert!(matches!(arm64_in("linux", "x86_64", binfmt.path()), Arm64::Unavailable(_)), "32-bit arm is not arm64");
        std::fs::write(
            binfmt.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n",
        )
        .unwrap();
        assert_eq!(
            arm64_in("linux", "x86_64", binfmt.path()),
            Arm64::Emulated { interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into() }
        );
        let mac = arm64_in("macos", "aarch64", binfmt.path());
        assert!(mac.to_string().contains("Linux binary and this machine runs macos"), "{mac}");
    }

    #[test]
    fn the_bootstrap_comes_out_of_the_release_zip_executable() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let lambda = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lambda.path().join("publish-metrics")).unwrap();
        let file = std::fs::File::create(lambda.path().join("publish-metrics/bootstrap.zip")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file("bootstrap", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(b"\x7fELF arm64").unwrap();
        zip.finish().unwrap();
        let out = tempfile::tempdir().unwrap();
        extract_bootstraps(lambda.path(), &["publish-metrics"], out.path()).unwrap();
        let bootstrap = out.path().join("publish-metrics");
        assert_eq!(std::fs::read(&bootstrap).unwrap(), b"\x7fELF arm64");
        assert_eq!(std::fs::metadata(&bootstrap).unwrap().permissions().mode() & 0o777, 0o755);
        let err = extract_bootstraps(lambda.path(), &["events-load-test"], out.path()).unwrap_err().to_string();
        assert!(err.contains("events-load-test/bootstrap.zip") && err.contains("cargo lambda build"), "{err}");
    }
}
