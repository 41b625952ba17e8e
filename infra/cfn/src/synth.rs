//! Synthesis output: each stack's template as YAML and JSON and the event details' JSON
//! Schemas, written into a directory all at once (temporary files, then renames) or compared
//! with what is there (`--check`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::constructs::Stack;

/// Suffixes of the files synth owns in its output directory.
const OWNED_SUFFIXES: [&str; 4] = [".template.yaml", ".template.json", ".schema.json", ".dot"];

/// One file synth produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub file_name: String,
    pub contents: String,
    /// Resources in the template; `None` for a schema or a diagram.
    pub resources: Option<usize>,
}

impl Artifact {
    /// What the file holds, for progress lines.
    pub fn summary(&self) -> String {
        match self.resources {
            Some(n) => format!("{n} resources, {} bytes", self.contents.len()),
            None if self.file_name.ends_with(".dot") => format!("diagram, {} bytes", self.contents.len()),
            None => format!("JSON Schema, {} bytes", self.contents.len()),
        }
    }
}

/// The architecture diagram of each stack (Graphviz DOT).
pub fn diagram_artifacts<'a>(stacks: impl IntoIterator<Item = &'a Stack>) -> crate::Result<Vec<Artifact>> {
    stacks
        .into_iter()
        .map(|s| {
            let contents = crate::diagram::dot(s)?;
            Ok(Artifact { file_name: format!("{}.dot", s.name()), contents, resources: None })
        })
        .collect()
}

/// Renders every stack into its artifacts. Fails, producing nothing, on the first invalid stack.
pub fn artifacts<'a>(stacks: impl IntoIterator<Item = &'a Stack>) -> crate::Result<Vec<Artifact>> {
    let mut out = Vec::new();
    for stack in stacks {
        let template = stack.to_template()?;
        let resources = template.resources.len();
        for (ext, contents) in [("yaml", template.to_yaml()?), ("json", template.to_json()?)] {
            out.push(Artifact {
                file_name: format!("{}.template.{ext}", stack.name()),
                contents,
                resources: Some(resources),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create output directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
}

fn owned(file_name: &str) -> bool {
    OWNED_SUFFIXES.iter().any(|s| file_name.ends_with(s))
}

/// Files in `dir` that synth owns but no longer produces.
fn leftovers(dir: &Path, artifacts: &[Artifact]) -> Result<Vec<PathBuf>, OutputError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(OutputError::Read { path: dir.to_owned(), source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| OutputError::Read { path: dir.to_owned(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if owned(&name) && !artifacts.iter().any(|a| a.file_name == name) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// One artifact after [`write`]: where it is, and whether its bytes were already there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub unchanged: bool,
}

/// Writes `artifacts` into `dir`. Every changed file is first written and flushed under a
/// temporary name, then all are renamed into place, so a failure leaves no partial file behind;
/// a file whose bytes are already there is left alone (no write, no flush: an edit of one stack
/// rewrites only its files). Owned files that are no longer produced are removed. Returns each
/// artifact's path, in order.
pub fn write(dir: &Path, artifacts: &[Artifact]) -> Result<Vec<Written>, OutputError> {
    fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir { path: dir.to_owned(), source })?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut written = Vec::new();
    let result = (|| {
        for a in artifacts {
            let path = dir.join(&a.file_name);
            let unchanged = fs::read(&path).is_ok_and(|old| old == a.contents.as_bytes());
            written.push(Written { path: path.clone(), unchanged });
            if unchanged {
                continue;
            }
            let tmp = dir.join(format!(".{}.tmp{}", a.file_name, std::process::id()));
            staged.push((tmp.clone(), path));
            let mut f = fs::File::create(&tmp).map_err(|source| OutputError::Write { path: tmp.clone(), source })?;
            f.write_all(a.contents.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|source| OutputError::Write { path: tmp.clone(), source })?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    for path in leftovers(dir, artifacts)? {
        fs::remove_file(&path).map_err(|source| OutputError::Write { path: path.clone(), source })?;
    }
    for (tmp, path) in staged {
        fs::rename(&tmp, &path).map_err(|source| OutputError::Write { path: path.clone(), source })?;
    }
    Ok(written)
}

/// Why a file in the output directory is out of date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staleness {
    Missing,
    Differs,
    /// Synth owns the name but no longer produces it.
    Unexpected,
}

/// The files of `dir` that differ from `artifacts`; empty when it is up to date.
pub fn stale(dir: &Path, artifacts: &[Artifact]) -> Result<Vec<(PathBuf, Staleness)>, OutputError> {
    let mut out = Vec::new();
    for a in artifacts {
        let path = dir.join(&a.file_name);
        match fs::read(&path) {
            Ok(bytes) if bytes == a.contents.as_bytes() => {}
            Ok(_) => out.push((path, Staleness::Differs)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.push((path, Staleness::Missing)),
            Err(source) => return Err(OutputError::Read { path, source }),
        }
    }
    out.extend(leftovers(dir, artifacts)?.into_iter().map(|p| (p, Staleness::Unexpected)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error and its sources, as `anyhow`'s `{:#}` prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out = format!("{out}: {s}");
            source = s.source();
        }
        out
    }

    #[test]
    fn an_io_error_is_printed_once_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, "x").unwrap();
        // A directory cannot be made under a file.
        let err = write(&file.join("out"), &[]).unwrap_err();
        let text = chain(&err);
        assert!(
            text.starts_with(&format!("cannot create output directory {}: ", file.join("out").display())),
            "{text}"
        );
        assert_eq!(text.matches("Not a directory").count(), 1, "{text}");
    }

    fn sample() -> Vec<Artifact> {
        ["a.template.yaml", "a.template.json"]
            .map(|n| Artifact { file_name: n.into(), contents: format!("{n}\n"), resources: Some(1) })
            .to_vec()
    }

    #[test]
    fn files_already_current_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let art = |name: &str, contents: &str| Artifact {
            file_name: name.to_owned(),
            contents: contents.to_owned(),
            resources: None,
        };
        let first = write(dir.path(), &[art("a.json", "1"), art("b.json", "2")]).unwrap();
        assert!(first.iter().all(|w| !w.unchanged));
        let before = fs::metadata(dir.path().join("a.json")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = write(dir.path(), &[art("a.json", "1"), art("b.json", "3")]).unwrap();
        assert_eq!(second.iter().map(|w| w.unchanged).collect::<Vec<_>>(), [true, false]);
        assert_eq!(fs::metadata(dir.path().join("a.json")).unwrap().modified().unwrap(), before, "not rewritten");
        assert_eq!(fs::read_to_string(dir.path().join("b.json")).unwrap(), "3");
        assert_eq!(second[1].path, dir.path().join("b.json"));
    }

    #[test]
    fn write_then_check_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("synth-out");
        assert_eq!(stale(&out, &sample()).unwrap().len(), 2);
        let written = write(&out, &sample()).unwrap();
        assert_eq!(written.len(), 2);
        assert!(stale(&out, &sample()).unwrap().is_empty());
        let names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn check_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &sample()).unwrap();
        fs::write(dir.path().join("a.template.json"), "edited").unwrap();
        fs::write(dir.path().join("old.template.yaml"), "gone").unwrap();
        fs::write(dir.path().join("Old.schema.json"), "gone").unwrap();
        fs::write(dir.path().join("notes.txt"), "not ours").unwrap();
        let s = stale(dir.path(), &sample()).unwrap();
        assert_eq!(
            s,
            vec![
                (dir.path().join("a.template.json"), Staleness::Differs),
                (dir.path().join("Old.schema.json"), Staleness::Unexpected),
                (dir.path().join("old.template.yaml"), Staleness::Unexpected),
            ]
        );
        write(dir.path(), &sample()).unwrap();
        assert!(!dir.path().join("old.template.yaml").exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut artifacts = sample();
        // A name that cannot be created: its parent is a missing directory.
        artifacts.push(Artifact {
            file_name: "missing/x.template.json".into(),
            contents: String::new(),
            resources: None,
        });
        assert!(write(dir.path(), &artifacts).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
