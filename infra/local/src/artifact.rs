//! Which build of a handler the local run executes: the deployed arm64 `bootstrap` from the
//! release zip where this machine can run it (an arm64 Linux host, qemu-user registered with
//! the kernel's binfmt_misc, or qemu-user called directly with an aarch64 glibc), otherwise a
//! build for this machine from the same sources (which differs from what is deployed: target,
//! optimizations, overflow checks, speed).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use lambda_local::Launcher;

use crate::LocalError;

/// qemu-user's programs for arm64, as Debian's `qemu-user-static` and `qemu-user` name them.
pub const QEMU_PROGRAMS: [&str; 2] = ["qemu-aarch64-static", "qemu-aarch64"];

/// Where Debian's `libc6-arm64-cross` puts the aarch64 glibc the bootstrap links against.
pub const ARM64_SYSROOTS: [&str; 1] = ["/usr/aarch64-linux-gnu"];

/// The dynamic loader the bootstrap names (`/lib/ld-linux-aarch64.so.1`), under a sysroot.
const LOADER: &str = "lib/ld-linux-aarch64.so.1";

/// Whether this machine can run the deployed arm64 Linux `bootstrap`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arm64 {
    /// An arm64 Linux host.
    Native,
    /// Under qemu-user, which binfmt_misc starts for arm64 binaries.
    Emulated { interpreter: String },
    /// Under qemu-user called directly, with the aarch64 glibc in `sysroot`.
    Qemu { qemu: PathBuf, sysroot: PathBuf },
    /// Not here, and why.
    Unavailable(String),
}

impl fmt::Display for Arm64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arm64::Native => f.write_str("natively, on this arm64 Linux host"),
            Arm64::Emulated { interpreter } => write!(f, "under {interpreter} (binfmt_misc)"),
            Arm64::Qemu { qemu, sysroot } => {
                write!(f, "under {} -L {} (qemu-user, called directly)", qemu.display(), sysroot.display())
            }
            Arm64::Unavailable(why) => f.write_str(why),
        }
    }
}

impl Arm64 {
    /// What starts the bootstrap, where it cannot start itself.
    pub fn launcher(&self) -> Option<Launcher> {
        match self {
            Arm64::Qemu { qemu, sysroot } => {
                Some(Launcher { program: qemu.clone(), args: vec!["-L".to_owned(), sysroot.display().to_string()] })
            }
            _ => None,
        }
    }
}

/// What this machine offers.
pub fn arm64() -> Arm64 {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let qemu = std::env::split_paths(&path)
        .flat_map(|dir| QEMU_PROGRAMS.iter().map(move |p| dir.join(p)))
        .find(|p| p.is_file());
    let sysroot = ARM64_SYSROOTS.iter().map(PathBuf::from).find(|s| s.join(LOADER).exists());
    let binfmt = Path::new("/proc/sys/fs/binfmt_misc");
    arm64_in(std::env::consts::OS, std::env::consts::ARCH, binfmt, qemu.as_deref(), sysroot.as_deref())
}

/// What a machine running `os` on `arch`, with binfmt_misc entries in `binfmt`, qemu-user at
/// `qemu` and an aarch64 glibc in `sysroot`, offers.
pub fn arm64_in(os: &str, arch: &str, binfmt: &Path, qemu: Option<&Path>, sysroot: Option<&Path>) -> Arm64 {
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
    match (qemu, sysroot) {
        (Some(qemu), Some(sysroot)) => Arm64::Qemu { qemu: qemu.to_owned(), sysroot: sysroot.to_owned() },
        (Some(qemu), None) => Arm64::Unavailable(format!(
            "this machine is {arch}; {} is here but no aarch64 glibc, which the bootstrap links against (in {}: install libc6-arm64-cross)",
            qemu.display(),
            ARM64_SYSROOTS.join(", ")
        )),
        (None, _) => Arm64::Unavailable(format!(
            "this machine is {arch} with no enabled qemu-aarch64 handler in {} and no {} on PATH",
            binfmt.display(),
            QEMU_PROGRAMS.join(" or ")
        )),
    }
}

/// The handlers' binaries a run executes, and what starts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handlers {
    /// One binary per asset name (`publish-metrics`, `events-load-test`).
    pub dir: PathBuf,
    pub launcher: Option<Launcher>,
}

impl Handlers {
    /// Binaries this machine runs by itself (a host build, or arm64 on an arm64 host).
    pub fn runnable(dir: PathBuf) -> Handlers {
        Handlers { dir, launcher: None }
    }
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
        let at = |os, arch| arm64_in(os, arch, binfmt.path(), None, None);
        assert_eq!(at("linux", "aarch64"), Arm64::Native);
        let none = at("linux", "x86_64");
        assert!(
            matches!(&none, Arm64::Unavailable(why) if why.contains("x86_64 with no enabled qemu-aarch64")
                && why.contains("no qemu-aarch64-static or qemu-aarch64 on PATH")),
            "{none}"
        );
        std::fs::write(binfmt.path().join("qemu-aarch64"), "disabled\ninterpreter /usr/bin/qemu-aarch64\n").unwrap();
        assert!(matches!(at("linux", "x86_64"), Arm64::Unavailable(_)), "a disabled handler");
        std::fs::write(binfmt.path().join("qemu-arm"), "enabled\ninterpreter /usr/bin/qemu-arm\n").unwrap();
        assert!(matches!(at("linux", "x86_64"), Arm64::Unavailable(_)), "32-bit arm is not arm64");
        std::fs::write(
            binfmt.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n",
        )
        .unwrap();
        assert_eq!(
            at("linux", "x86_64"),
            Arm64::Emulated { interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into() }
        );
        let mac = at("macos", "aarch64");
        assert!(mac.to_string().contains("Linux binary and this machine runs macos"), "{mac}");
    }

    #[test]
    fn without_binfmt_qemu_is_called_directly_given_an_aarch64_glibc() {
        let binfmt = tempfile::tempdir().unwrap();
        let (qemu, sysroot) = (Path::new("/usr/bin/qemu-aarch64-static"), Path::new("/usr/aarch64-linux-gnu"));
        let found = arm64_in("linux", "x86_64", binfmt.path(), Some(qemu), Some(sysroot));
        assert_eq!(found, Arm64::Qemu { qemu: qemu.into(), sysroot: sysroot.into() });
        assert_eq!(
            found.to_string(),
            "under /usr/bin/qemu-aarch64-static -L /usr/aarch64-linux-gnu (qemu-user, called directly)"
        );
        let launcher = found.launcher().expect("qemu starts it");
        assert_eq!(
            (launcher.program.as_path(), launcher.args.as_slice()),
            (qemu, &["-L".to_owned(), "/usr/aarch64-linux-gnu".to_owned()][..])
        );
        // The bootstrap links glibc dynamically: qemu alone cannot start it.
        let no_libc = arm64_in("linux", "x86_64", binfmt.path(), Some(qemu), None);
        assert!(matches!(&no_libc, Arm64::Unavailable(why) if why.contains("install libc6-arm64-cross")), "{no_libc}");
        assert_eq!(no_libc.launcher(), None);
        // An arm64 host, or binfmt, needs no launcher.
        assert_eq!(arm64_in("linux", "aarch64", binfmt.path(), Some(qemu), Some(sysroot)), Arm64::Native);
        assert_eq!(Arm64::Native.launcher(), None);
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
