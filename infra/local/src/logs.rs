//! The functions' logs of a run: one JSON Lines file per function, every line as
//! `{"function", "requestId", "stream", "message"}`, where a JSON log line stays a JSON object.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lambda_local::LogLine;

use crate::LocalError;

pub struct LogFiles {
    dir: PathBuf,
    files: Mutex<BTreeMap<String, std::io::BufWriter<std::fs::File>>>,
    /// The first file that could not be written, reported at the end of the run.
    failed: Mutex<Option<LocalError>>,
}

impl LogFiles {
    /// Files in `dir`, created as functions first write.
    pub fn new(dir: PathBuf) -> Result<Self, LocalError> {
        std::fs::create_dir_all(&dir).map_err(|source| LocalError::Write { path: dir.clone(), source })?;
        Ok(LogFiles { dir, files: Mutex::new(BTreeMap::new()), failed: Mutex::new(None) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `function`.
    pub fn path(&self, function: &str) -> PathBuf {
        self.dir.join(format!("{function}.jsonl"))
    }

    pub fn write(&self, line: &LogLine) {
        let message = serde_json::from_str::<serde_json::Value>(&line.line)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::Value::String(line.line.clone()));
        let record = serde_json::json!({
            "function": line.function, "requestId": line.request_id, "stream": line.stream, "message": message,
        });
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if !files.contains_key(&line.function) {
            let path = self.path(&line.function);
            match std::fs::File::create(&path) {
                Ok(f) => {
                    files.insert(line.function.clone(), std::io::BufWriter::new(f));
                }
                Err(source) => return self.fail(LocalError::Write { path, source }),
            }
        }
        if let Some(f) = files.get_mut(&line.function) {
            if let Err(source) = writeln!(f, "{record}") {
                self.fail(LocalError::Write { path: self.path(&line.function), source });
            }
        }
    }

    fn fail(&self, error: LocalError) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
    }

    /// Flushes every file; the first write that failed during the run, if any.
    pub fn finish(&self) -> Result<(), LocalError> {
        for (function, f) in self.files.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            if let Err(source) = f.flush() {
                self.fail(LocalError::Write { path: self.path(function), source });
            }
        }
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take().map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(function: &str, text: &str) -> LogLine {
        LogLine {
            function: function.into(),
            request_id: Some("r1".into()),
            stream: lambda_local::Stream::Stdout,
            line: text.into(),
        }
    }

    #[test]
    fn one_file_per_function_and_json_lines_stay_objects() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogFiles::new(dir.path().join("logs")).unwrap();
        logs.write(&line("A", r#"{"level":"INFO"}"#));
        logs.write(&line("A", "plain text"));
        logs.write(&line("B", "[1,2]"));
        logs.finish().unwrap();
        let a = std::fs::read_to_string(logs.path("A")).unwrap();
        let docs: Vec<serde_json::Value> = a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(docs[0]["message"]["level"], "INFO");
        assert_eq!(docs[1]["message"], "plain text");
        assert_eq!(docs[0]["requestId"], "r1");
        let b = std::fs::read_to_string(logs.path("B")).unwrap();
        assert!(b.contains(r#""message":"[1,2]""#), "only objects stay JSON: {b}");
    }

    #[test]
    fn a_file_that_cannot_be_written_is_reported_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogFiles::new(dir.path().to_owned()).unwrap();
        // A directory where the file should be.
        std::fs::create_dir(logs.path("A")).unwrap();
        logs.write(&line("A", "x"));
        let err = logs.finish().unwrap_err().to_string();
        assert!(err.starts_with("cannot write ") && err.contains("A.jsonl"), "{err}");
    }
}
