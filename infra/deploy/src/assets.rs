//! Lambda assets: the zips cargo-lambda builds, found from the template's `Metadata.Asset`,
//! checked for the function's architecture, made byte-reproducible and keyed by SHA-256.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One function's code as the template describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// The function's logical ID.
    pub function: String,
    /// The cargo-lambda binary name.
    pub name: String,
    /// `arm64` or `x86_64`.
    pub architecture: String,
    pub bucket_parameter: String,
    pub key_parameter: String,
}

impl Asset {
    /// Where cargo-lambda writes this asset's zip under `lambda_dir`.
    pub fn zip_path(&self, lambda_dir: &Path) -> PathBuf {
        lambda_dir.join(&self.name).join("bootstrap.zip")
    }

    /// The build command that produces the zip for this architecture.
    pub fn build_command(&self) -> String {
        let arch = if self.architecture == "arm64" { " --arm64" } else { "" };
        format!("cargo lambda build --release{arch} --output-format zip")
    }
}

/// The assets of `functions` (the handles of the stack's functions), in logical-ID order;
/// functions whose code is not a cargo-lambda asset have none.
pub fn assets_of<'a>(functions: impl IntoIterator<Item = &'a cfn::constructs::lambda::Function>) -> Vec<Asset> {
    let mut assets: Vec<Asset> = functions
        .into_iter()
        .filter_map(|f| {
            let cfn::constructs::lambda::Code::Asset { name } = f.code() else { return None };
            let parameters = f.asset_parameters()?;
            Some(Asset {
                function: f.construct().id.to_string(),
                name: name.clone(),
                architecture: f.architecture().as_str().to_owned(),
                bucket_parameter: parameters.bucket.to_string(),
                key_parameter: parameters.key.to_string(),
            })
        })
        .collect();
    assets.sort_by(|a, b| a.function.cmp(&b.function));
    assets
}

/// Where cargo-lambda puts zips: `$CARGO_TARGET_DIR/lambda`, else `target/lambda`.
pub fn default_lambda_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("lambda")
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{path} is missing: build it with `{command}`")]
    Missing { path: PathBuf, command: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path} holds a {found} bootstrap, but {function} runs on {expected}: rebuild with `{command}`")]
    WrongArchitecture { path: PathBuf, function: String, found: String, expected: String, command: String },
    #[error("{path} has no `bootstrap` file at its root: build it with `{command}`")]
    NoBootstrap { path: PathBuf, command: String },
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A zip ready to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packaged {
    pub asset: Asset,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl Packaged {
    /// The S3 key: `<name>/<sha256>.zip`, so a new build is a new key (and a code update).
    pub fn key(&self) -> String {
        format!("{}/{}.zip", self.asset.name, self.sha256)
    }
}

/// The architecture of an ELF executable, from its `e_machine` field.
fn elf_architecture(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("arm64"),
        _ => Some("unknown"),
    }
}

/// The zip's entries as `(name, unix mode, contents)`, sorted by name.
fn entries(path: &Path, data: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, AssetError> {
    let read_err = |e: &dyn std::fmt::Display| AssetError::Read { path: path.to_owned(), reason: e.to_string() };
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| read_err(&e))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).map_err(|e| read_err(&e))?;
        if f.is_dir() {
            continue;
        }
        let mut contents = Vec::new();
        f.read_to_end(&mut contents).map_err(|e| read_err(&e))?;
        let name = f.name().map_err(|e| read_err(&e))?.into_owned();
        out.push((name, f.unix_mode().unwrap_or(0o644) & 0o777, contents));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The same files as a zip whose bytes depend only on their names, modes and contents:
/// entries sorted, timestamps at the zip epoch (1980-01-01), a fixed compression level.
fn reproducible_zip(path: &Path, files: &[(String, u32, Vec<u8>)]) -> Result<Vec<u8>, AssetError> {
    let write_err = |e: &dyn std::fmt::Display| AssetError::Write { path: path.to_owned(), reason: e.to_string() };
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, mode, contents) in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9))
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(*mode);
        out.start_file(name.as_str(), options).map_err(|e| write_err(&e))?;
        out.write_all(contents).map_err(|e| write_err(&e))?;
    }
    Ok(out.finish().map_err(|e| write_err(&e))?.into_inner())
}

/// Checks the zip of `asset` under `lambda_dir`, rewrites it reproducibly when needed (through
/// a temporary file, so it is never left half-written), and returns its SHA-256.
pub fn package(asset: &Asset, lambda_dir: &Path) -> Result<Packaged, AssetError> {
    let path = asset.zip_path(lambda_dir);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AssetError::Missing { path, command: asset.build_command() });
        }
        Err(e) => return Err(AssetError::Read { path, reason: e.to_string() }),
    };
    let files = entries(&path, &data)?;
    let Some((_, _, bootstrap)) = files.iter().find(|(n, _, _)| n == "bootstrap") else {
        return Err(AssetError::NoBootstrap { path, command: asset.build_command() });
    };
    let found = elf_architecture(bootstrap).unwrap_or("non-ELF");
    if found != asset.architecture {
        return Err(AssetError::WrongArchitecture {
            path,
            function: asset.function.clone(),
            found: found.to_owned(),
            expected: asset.architecture.clone(),
            command: asset.build_command(),
        });
    }
    let normal = reproducible_zip(&path, &files)?;
    if normal != data {
        let tmp = path.with_extension("zip.tmp");
        fs::write(&tmp, &normal)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| AssetError::Write { path: path.clone(), reason: e.to_string() })?;
    }
    Ok(Packaged { asset: asset.clone(), sha256: sha256_hex(&normal), bytes: normal.len() as u64, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(arch: &str) -> Asset {
        Asset {
            function: "PublishMetrics".into(),
            name: "publish-metrics".into(),
            architecture: arch.into(),
            bucket_parameter: "AssetBucket".into(),
            key_parameter: "PublishMetricsCodeKey".into(),
        }
    }

    /// A fake ELF header for `machine`.
    fn elf(machine: u16) -> Vec<u8> {
        let mut b = b"\x7fELF".to_vec();
        b.resize(18, 0);
        b.extend(machine.to_le_bytes());
        b.extend([0u8; 64]);
        b
    }

    /// A zip as cargo-lambda writes it: with a real modification time.
    fn write_zip(dir: &Path, files: &[(&str, u32, Vec<u8>)], minute: u8) {
        let path = asset("arm64").zip_path(dir);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        for (name, mode, contents) in files {
            let t = zip::DateTime::from_date_and_time(2026, 11, 27, 2, minute, 0).unwrap();
            let o = zip::write::SimpleFileOptions::default().last_modified_time(t).unix_permissions(*mode);
            w.start_file(*name, o).unwrap();
            w.write_all(contents).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn rebuilt_zips_of_the_same_binary_get_the_same_hash() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_zip(a.path(), &[("bootstrap", 0o755, elf(0xb7))], 15);
        write_zip(b.path(), &[("bootstrap", 0o755, elf(0xb7))], 18);
        let pa = package(&asset("arm64"), a.path()).unwrap();
        let pb = package(&asset("arm64"), b.path()).unwrap();
        assert_eq!(pa.sha256, pb.sha256);
        assert_eq!(fs::read(&pa.path).unwrap(), fs::read(&pb.path).unwrap());
        assert_eq!(pa.key(), format!("publish-metrics/{}.zip", pa.sha256));
        assert_eq!(package(&asset("arm64"), a.path()).unwrap(), pa, "packaging again changes nothing");
        let mut archive = zip::ZipArchive::new(fs::File::open(&pa.path).unwrap()).unwrap();
        assert_eq!(archive.by_name("bootstrap").unwrap().unix_mode().unwrap() & 0o777, 0o755);
        let c = tempfile::tempdir().unwrap();
        write_zip(c.path(), &[("bootstrap", 0o755, elf(0xb7)), ("extra", 0o644, vec![1])], 15);
        assert_ne!(package(&asset("arm64"), c.path()).unwrap().sha256, pa.sha256);
    }

    #[test]
    fn errors_say_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let missing = package(&asset("arm64"), dir.path()).unwrap_err().to_string();
        assert!(missing.ends_with("publish-metrics/bootstrap.zip is missing: build it with `cargo lambda build --release --arm64 --output-format zip`"), "{missing}");
        write_zip(dir.path(), &[("bootstrap", 0o755, elf(0x3e))], 1);
        let wrong = package(&asset("arm64"), dir.path()).unwrap_err().to_string();
        assert!(wrong.contains("holds a x86_64 bootstrap, but PublishMetrics runs on arm64"), "{wrong}");
        assert!(package(&asset("x86_64"), dir.path()).is_ok());
        write_zip(dir.path(), &[("main", 0o755, elf(0x3e))], 1);
        assert!(matches!(package(&asset("x86_64"), dir.path()), Err(AssetError::NoBootstrap { .. })));
        fs::write(asset("arm64").zip_path(dir.path()), b"not a zip").unwrap();
        assert!(matches!(package(&asset("x86_64"), dir.path()), Err(AssetError::Read { .. })));
    }

    #[test]
    fn assets_come_from_the_template() {
        let stack = metrics_stack::metrics_stack(&Default::default()).unwrap();
        let assets = assets_of(stack.functions());
        let names: Vec<(&str, &str, &str)> =
            assets.iter().map(|a| (a.function.as_str(), a.name.as_str(), a.key_parameter.as_str())).collect();
        assert_eq!(
            names,
            [
                ("EventsLoadTest", "events-load-test", "EventsLoadTestCodeKey"),
                ("PublishMetrics", "publish-metrics", "PublishMetricsCodeKey")
            ]
        );
        assert!(assets.iter().all(|a| a.architecture == "arm64" && a.bucket_parameter == "AssetBucket"));
    }
}
