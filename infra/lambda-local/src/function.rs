//! One function's execution environment: its bootstrap as a child process with the environment
//! Lambda gives it, invoked through the Runtime API, killed at its timeout and started again on
//! the next invocation (as Lambda resets an environment after a timeout or a crash).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::oneshot;

use crate::runtime_api::{FunctionError, Pending, Reply, Server};
use crate::{Error, MAX_PAYLOAD_BYTES, MAX_RESPONSE_BYTES};

/// The credentials the function's role would give it (on a local endpoint, any).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Lines Lambda itself writes: `START`, `END`, `REPORT`, init and timeout reports.
    Platform,
}

/// One line a function wrote, with the invocation it belongs to (`None` before the first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub function: String,
    pub request_id: Option<String>,
    pub stream: Stream,
    pub line: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.function, self.request_id.as_deref().unwrap_or("init"), self.line)
    }
}

/// Longest log line passed on in one piece (CloudWatch Logs' event size limit, 256 KiB).
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Receives every log line of every instance.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// What starts a bootstrap this machine cannot run by itself: an emulator (qemu-user) and its
/// arguments, given the bootstrap's path last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// A function as the template deploys it, with the binary this machine runs.
#[derive(Clone)]
pub struct FunctionConfig {
    pub name: String,
    /// The handler's `bootstrap`: the deployed one, or one built for this machine from the same
    /// sources.
    pub binary: PathBuf,
    /// Runs `binary` through an emulator; `None`: the binary runs itself.
    pub launcher: Option<Launcher>,
    /// The template's `Environment.Variables`, resolved.
    pub environment: BTreeMap<String, String>,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub region: String,
    pub account_id: String,
    /// `LoggingConfig.LogFormat: JSON`.
    pub json_logs: bool,
    pub credentials: Credentials,
    /// The local AWS endpoint the function's SDK clients call (`AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    pub logs: LogSink,
}

impl std::fmt::Debug for FunctionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionConfig")
            .field("name", &self.name)
            .field("binary", &self.binary)
            .field("launcher", &self.launcher)
            .field("environment", &self.environment)
            .field("timeout", &self.timeout)
            .field("memory_mb", &self.memory_mb)
            .finish_non_exhaustive()
    }
}

impl FunctionConfig {
    /// `binary` as function `name` with Lambda's defaults (3 s, 128 MB), no environment, text
    /// logs dropped, us-east-1 in account 123456789012 with placeholder credentials and no
    /// endpoint; set the rest by field.
    pub fn new(name: &str, binary: impl Into<PathBuf>) -> FunctionConfig {
        FunctionConfig {
            name: name.to_owned(),
            binary: binary.into(),
            launcher: None,
            environment: BTreeMap::new(),
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            json_logs: false,
            credentials: Credentials {
                access_key_id: "testing".to_owned(),
                secret_access_key: "testing".to_owned(),
                session_token: None,
            },
            endpoint_url: None,
            logs: Arc::new(|_| {}),
        }
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account_id, self.name)
    }

    /// The process environment: the template's variables, then Lambda's own (which a template
    /// cannot override), then the credentials and the endpoint. Nothing of this process's own
    /// environment leaks in but `PATH`.
    fn process_environment(&self, runtime_api: &str, stream: &str) -> BTreeMap<String, String> {
        let mut env = self.environment.clone();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("AWS_LAMBDA_RUNTIME_API", runtime_api);
        set("AWS_LAMBDA_FUNCTION_NAME", &self.name);
        set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &self.memory_mb.to_string());
        set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
        set("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{}", self.name));
        set("AWS_LAMBDA_LOG_STREAM_NAME", stream);
        if self.json_logs {
            set("AWS_LAMBDA_LOG_FORMAT", "JSON");
        }
        set("AWS_REGION", &self.region);
        set("AWS_DEFAULT_REGION", &self.region);
        set("_HANDLER", "bootstrap");
        set("LAMBDA_TASK_ROOT", "/var/task");
        set("LAMBDA_RUNTIME_DIR", "/var/runtime");
        set("TZ", ":UTC");
        set("LANG", "en_US.UTF-8");
        set("AWS_ACCESS_KEY_ID", &self.credentials.access_key_id);
        set("AWS_SECRET_ACCESS_KEY", &self.credentials.secret_access_key);
        if let Some(token) = &self.credentials.session_token {
            set("AWS_SESSION_TOKEN", token);
        }
        if let Some(url) = &self.endpoint_url {
            set("AWS_ENDPOINT_URL", url);
        }
        if let Ok(path) = std::env::var("PATH") {
            set("PATH", &path);
        }
        env
    }
}

/// How one invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime posted a response (any bytes: the caller judges them).
    Response(Bytes),
    /// The runtime posted an error (`invocation/{id}/error`).
    FunctionError(FunctionError),
    /// The runtime reported `init/error`, or exited before taking the invocation after doing so.
    InitError(FunctionError),
    /// Still running at the function's timeout: killed.
    Timeout(Duration),
    /// The process exited while the invocation was pending.
    Crashed(String),
    /// The response was over 6 MB.
    ResponseTooLarge,
    /// The runtime used more than the function's `MemorySize`: killed, as Lambda kills it.
    OutOfMemory { used_mb: u64 },
}

impl Outcome {
    /// Whether Lambda would count it in the function's `Errors` metric.
    pub fn is_error(&self) -> bool {
        !matches!(self, Outcome::Response(_))
    }

    /// The error type Lambda itself gives this ending (REPORT's `Error Type`, and the
    /// `errorType` an Invoke caller gets), where the function did not report one.
    pub fn platform_error_type(&self) -> Option<&'static str> {
        match self {
            Outcome::Response(_) | Outcome::FunctionError(_) | Outcome::Timeout(_) => None,
            Outcome::InitError(_) => Some("Runtime.InitError"),
            Outcome::Crashed(_) => Some("Runtime.ExitError"),
            Outcome::ResponseTooLarge => Some("Function.ResponseSizeTooLarge"),
            Outcome::OutOfMemory { .. } => Some("Runtime.OutOfMemory"),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Response(b) => write!(f, "{}", String::from_utf8_lossy(b)),
            Outcome::FunctionError(e) => write!(f, "function error {e}"),
            Outcome::InitError(e) => write!(f, "init error {e}"),
            Outcome::Timeout(t) => write!(f, "Task timed out after {:.2} seconds", t.as_secs_f64()),
            Outcome::Crashed(why) => write!(f, "Runtime exited: {why}"),
            Outcome::ResponseTooLarge => write!(f, "response over {MAX_RESPONSE_BYTES} bytes"),
            Outcome::OutOfMemory { used_mb } => {
                write!(f, "Runtime exited with error: signal: killed (Runtime.OutOfMemory: {used_mb} MB used)")
            }
        }
    }
}

/// One invocation's result.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// A new process was started for it (a cold start).
    pub cold_start: bool,
}

/// What a caller of Lambda's Invoke API sets for one invocation.
#[derive(Clone, Debug, Default)]
pub struct InvokeContext {
    /// The request ID, when the caller has one already (an asynchronous invocation keeps its
    /// ID across retries); else a new one.
    pub request_id: Option<String>,
    /// The caller's `ClientContext` (base64 JSON), which the runtime gets as
    /// `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
}

/// A new request ID, in Lambda's format (a UUID).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lambda's limit on the init phase (Lambda Developer Guide, "Understanding the Lambda
/// execution environment lifecycle", Init phase: 10 seconds).
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// A memory figure of process `pid` in MB, rounded up, from Linux's `/proc/PID/status` (`VmHWM`:
/// the peak resident set; `VmRSS`: the current one); `None` where the system does not say.
fn memory_mb(pid: u32, field: &str) -> Option<u64> {
    status_mb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, field)
}

/// `field` of a `/proc/PID/status` text (`VmRSS:\t  1234 kB`) in MB, rounded up.
fn status_mb(status: &str, field: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.div_ceil(1024))
}

fn peak_memory_mb(pid: u32) -> Option<u64> {
    memory_mb(pid, "VmHWM")
}

/// How often a running environment's memory is checked against its `MemorySize`.
const MEMORY_CHECK: Duration = Duration::from_millis(10);

/// Resolves with the resident memory once process `pid` holds more than `limit_mb`, as Lambda
/// stops a function that exceeds its memory. Sampled every [`MEMORY_CHECK`]: a spike shorter
/// than that can pass unseen. Where `/proc` does not say, it never resolves.
async fn over_memory(pid: Option<u32>, limit_mb: u32) -> u64 {
    let Some(pid) = pid else { return std::future::pending().await };
    loop {
        match memory_mb(pid, "VmRSS") {
            Some(used) if used > u64::from(limit_mb) => return used,
            Some(_) => tokio::time::sleep(MEMORY_CHECK).await,
            None => return std::future::pending().await,
        }
    }
}

/// How long a reset waits for the last lines of a killed environment's pipes.
const READER_GRACE: Duration = Duration::from_secs(2);

struct Running {
    child: tokio::process::Child,
    server: Server,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// One execution environment of a function: at most one invocation at a time, as on Lambda.
pub struct Instance {
    config: Arc<FunctionConfig>,
    index: usize,
    current: Arc<Mutex<Option<String>>>,
    running: Option<Running>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An X-Ray trace header, in the format Lambda passes (`Root=1-<time>-<24 hex>;…`).
fn trace_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{:08x}-{};Parent={};Sampled=0", now_ms() / 1000, &id[..24], &id[16..32])
}

impl Instance {
    /// An environment that starts its process on the first invocation; `index` tells
    /// concurrent environments apart in log stream names.
    pub fn new(config: Arc<FunctionConfig>, index: usize) -> Instance {
        Instance { config, index, current: Arc::new(Mutex::new(None)), running: None }
    }

    fn platform(&self, request_id: Option<&str>, line: String) {
        (self.config.logs)(LogLine {
            function: self.config.name.clone(),
            request_id: request_id.map(str::to_owned),
            stream: Stream::Platform,
            line,
        });
    }

    async fn start(&mut self) -> Result<Running, Error> {
        let name = &self.config.name;
        let server = Server::start(self.current.clone())
            .await
            .map_err(|source| Error::Listen { function: name.clone(), source })?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let stream = format!("local/[$LATEST]{}-{}", self.index, uuid::Uuid::new_v4().simple());
        let mut command = match &self.config.launcher {
            Some(l) => {
                let mut c = tokio::process::Command::new(&l.program);
                c.args(&l.args).arg(&self.config.binary);
                c
            }
            None => tokio::process::Command::new(&self.config.binary),
        };
        let mut child = command
            .env_clear()
            .envs(self.config.process_environment(&server.addr.to_string(), &stream))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a reset kills whatever it started too (Lambda freezes
            // and discards the whole environment).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn { function: name.clone(), binary: self.config.binary.clone(), source })?;
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(self.reader(out, Stream::Stdout));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(self.reader(err, Stream::Stderr));
        }
        Ok(Running { child, server, readers })
    }

    fn reader(&self, pipe: impl AsyncRead + Unpin + Send + 'static, stream: Stream) -> tokio::task::JoinHandle<()> {
        let (config, current) = (self.config.clone(), self.current.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe);
            let mut buf = Vec::new();
            // Bytes, not `lines()`: a line that is not UTF-8 is still shown, not a stopped reader.
            // At most MAX_LINE_BYTES at a time: a line without end cannot fill the memory; a
            // longer one comes out in pieces, as CloudWatch Logs splits its events.
            while (&mut lines).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut buf).await.is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                buf.clear();
                let request_id = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (config.logs)(LogLine { function: config.name.clone(), request_id, stream, line });
            }
        })
    }

    /// Invokes the function once with `payload`, starting its process first if there is none.
    pub async fn invoke(&mut self, payload: impl Into<Bytes>) -> Result<Invocation, Error> {
        self.invoke_with(payload, InvokeContext::default()).await
    }

    /// [`Instance::invoke`] with what the caller of Lambda's Invoke API sets.
    pub async fn invoke_with(
        &mut self,
        payload: impl Into<Bytes>,
        context: InvokeContext,
    ) -> Result<Invocation, Error> {
        let payload = payload.into();
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::RequestTooLarge { function: self.config.name.clone(), size: payload.len() });
        }
        // A runtime that exited while idle is gone: Lambda starts a new one (a cold start),
        // it does not fail the next invocation.
        let alive = match self.running.take() {
            Some(mut r) => {
                if matches!(r.child.try_wait(), Ok(None)) {
                    Some(r)
                } else {
                    Self::stop(r).await;
                    None
                }
            }
            None => None,
        };
        let cold_start = alive.is_none();
        let init_started = Instant::now();
        let mut running = match alive {
            Some(r) => r,
            None => self.start().await?,
        };
        let pid = running.child.id();
        // Init is a phase of its own, as on Lambda: from the process's start to its first
        // `next`, at most INIT_LIMIT; the invocation's deadline and duration start after it.
        let init = if cold_start {
            self.platform_record(
                None,
                "INIT_START Runtime Version: provided:al2023".to_owned(),
                "platform.initStart",
                serde_json::json!({
                    "initializationType": "on-demand", "phase": "init", "runtimeVersion": "provided:al2023",
                    "functionName": self.config.name, "functionVersion": "$LATEST",
                }),
            );
            tokio::select! {
                _ = running.server.ready() => {}
                _ = running.child.wait() => {}
                _ = running.server.init_failed() => {}
                // Seen again, and reported, by the invocation.
                _ = over_memory(pid, self.config.memory_mb) => {}
                // Past the limit, init goes on inside the invocation's time (a "suppressed init").
                _ = tokio::time::sleep(INIT_LIMIT) => {}
            }
            Some(init_started.elapsed())
        } else {
            None
        };
        let request_id = context.request_id.unwrap_or_else(new_request_id);
        let timeout = self.config.timeout;
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            request_id: request_id.clone(),
            deadline_ms: now_ms() + timeout.as_millis() as u64,
            function_arn: self.config.arn(),
            trace_id: trace_id(),
            client_context: context.client_context,
            payload,
            reply,
        };
        self.platform_record(
            Some(&request_id),
            format!("START RequestId: {request_id} Version: $LATEST"),
            "platform.start",
            serde_json::json!({"requestId": request_id, "version": "$LATEST"}),
        );
        let outcome = if running.server.invocations.send(pending).await.is_err() {
            Outcome::Crashed("the Runtime API endpoint closed".to_owned())
        } else {
            let deadline = tokio::time::Instant::from_std(started + timeout);
            tokio::select! {
                // The answer first: a runtime that exits right after answering has answered.
                biased;
                reply = answer => match reply {
                    Ok(Reply::Response(body)) => Outcome::Response(body),
                    Ok(Reply::Error(e)) => Outcome::FunctionError(e),
                    Ok(Reply::TooLarge) => Outcome::ResponseTooLarge,
                    Err(_) => Outcome::Crashed("the invocation was dropped".to_owned()),
                },
                status = running.child.wait() => match running.server.init_error() {
                    Some(e) => Outcome::InitError(e),
                    None => Outcome::Crashed(status.map_or_else(|e| e.to_string(), |s| s.to_string())),
                },
                e = running.server.init_failed() => Outcome::InitError(e),
                used_mb = over_memory(pid, self.config.memory_mb) => Outcome::OutOfMemory { used_mb },
                _ = tokio::time::sleep_until(deadline) => Outcome::Timeout(timeout),
            }
        };
        let duration = started.elapsed();
        // Read before a reset ends the process.
        let max_memory_mb = match &outcome {
            // Lambda reports the whole memory as used.
            Outcome::OutOfMemory { .. } => Some(u64::from(self.config.memory_mb)),
            _ => running.child.id().and_then(peak_memory_mb),
        };
        if matches!(
            outcome,
            Outcome::Crashed(_) | Outcome::Timeout(_) | Outcome::InitError(_) | Outcome::OutOfMemory { .. }
        ) {
            // Lambda resets the environment: the next invocation starts a new process.
            Self::stop(running).await;
        } else {
            self.running = Some(running);
        }
        if let Outcome::Timeout(t) = &outcome {
            self.platform(Some(&request_id), format!("Task timed out after {:.2} seconds", t.as_secs_f64()));
        }
        let status = match &outcome {
            Outcome::Response(_) => "success",
            Outcome::Timeout(_) => "timeout",
            _ => "error",
        };
        let error_type = outcome.platform_error_type();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // A custom runtime's init is billed with its first invocation, rounded up to the ms
        // (Lambda pricing page: OS-only runtimes are billed for the Init phase).
        let billed_ms = (ms(duration) + init.map_or(0.0, ms)).ceil() as u64;
        let mut text = format!(
            "REPORT RequestId: {request_id} Duration: {:.2} ms Billed Duration: {billed_ms} ms Memory Size: {} MB",
            ms(duration),
            self.config.memory_mb
        );
        let mut metrics = serde_json::json!({
            "durationMs": (ms(duration) * 100.0).round() / 100.0,
            "billedDurationMs": billed_ms,
            "memorySizeMB": self.config.memory_mb,
        });
        if let Some(used) = max_memory_mb {
            text.push_str(&format!(" Max Memory Used: {used} MB"));
            metrics["maxMemoryUsedMB"] = used.into();
        }
        if let Some(i) = init {
            text.push_str(&format!(" Init Duration: {:.2} ms", ms(i)));
            metrics["initDurationMs"] = ((ms(i) * 100.0).round() / 100.0).into();
        }
        if status != "success" {
            text.push_str(&format!(" Status: {status}"));
        }
        if let Some(e) = error_type {
            text.push_str(&format!(" Error Type: {e}"));
        }
        self.platform_record(
            Some(&request_id),
            format!("END RequestId: {request_id}"),
            "platform.runtimeDone",
            serde_json::json!({"requestId": request_id, "status": status, "metrics": {"durationMs": metrics["durationMs"]}}),
        );
        let mut record = serde_json::json!({"requestId": request_id, "metrics": metrics, "status": status});
        if let Some(e) = error_type {
            record["errorType"] = e.into();
        }
        self.platform_record(Some(&request_id), text, "platform.report", record);
        Ok(Invocation { request_id, outcome, duration, cold_start })
    }

    /// A platform line: Lambda's text, or with `LogFormat: JSON` its JSON record of `kind`.
    fn platform_record(&self, request_id: Option<&str>, text: String, kind: &str, record: serde_json::Value) {
        if self.config.json_logs {
            let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            self.platform(request_id, serde_json::json!({"time": time, "type": kind, "record": record}).to_string());
        } else {
            self.platform(request_id, text);
        }
    }

    async fn stop(mut running: Running) {
        if let Some(pid) = running.child.id().and_then(|id| i32::try_from(id).ok()) {
            // SAFETY: kill(2) on the process group this environment started (its leader's pid):
            // no memory is shared; at worst the group is already gone (ESRCH).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = running.child.kill().await;
        // The pipes end with the process group: every line it wrote is passed on. A process
        // that left the group and still holds a pipe is not waited for beyond a grace period.
        for mut reader in running.readers.drain(..) {
            if tokio::time::timeout(READER_GRACE, &mut reader).await.is_err() {
                reader.abort();
            }
        }
    }

    /// Stops the process, if any, after passing on every line it wrote.
    pub async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            Self::stop(running).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FunctionConfig {
        FunctionConfig {
            environment: BTreeMap::from([("TABLE_NAME".into(), "t".into())]),
            memory_mb: 256,
            region: "eu-west-1".into(),
            json_logs: true,
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..FunctionConfig::new("PublishMetrics", "/nonexistent")
        }
    }

    #[test]
    fn the_environment_lambda_gives() {
        let env = config().process_environment("127.0.0.1:9001", "s");
        assert_eq!(env["TABLE_NAME"], "t");
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "PublishMetrics");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
        assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:5000");
        assert!(!env.contains_key("AWS_SESSION_TOKEN"));
        assert!(!env.contains_key("HOME"), "nothing of the caller's environment but PATH");
        assert_eq!(config().arn(), "arn:aws:lambda:eu-west-1:123456789012:function:PublishMetrics");
    }

    #[test]
    fn memory_figures_are_read_from_proc_status_and_anything_else_is_none() {
        let status = "Name:\tbootstrap\nVmHWM:\t  131073 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_mb(status, "VmHWM"), Some(129), "rounded up");
        assert_eq!(status_mb(status, "VmRSS"), Some(1));
        assert_eq!(status_mb(status, "VmSwap"), None, "absent");
        assert_eq!(status_mb("VmRSSX:\t 5 kB", "VmRSS"), None, "another field with the same start");
        assert_eq!(status_mb("VmRSS:\t lots kB", "VmRSS"), None);
        assert_eq!(status_mb("VmRSS:\t -5 kB", "VmRSS"), None);
        assert_eq!(status_mb("", "VmRSS"), None);
    }

    #[test]
    fn trace_ids_have_lambdas_shape() {
        let t = trace_id();
        let parts: Vec<&str> = t.split(';').collect();
        assert!(parts[0].starts_with("Root=1-") && parts[0].len() == "Root=1-".len() + 8 + 1 + 24, "{t}");
        assert!(parts[1].starts_with("Parent=") && parts[1].len() == "Parent=".len() + 16, "{t}");
        assert_eq!(parts[2], "Sampled=0");
    }

    #[tokio::test]
    async fn log_lines_are_passed_on_whole_up_to_the_limit_and_in_pieces_beyond() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let config = FunctionConfig { logs: Arc::new(move |l: LogLine| sink.lock().unwrap().push(l.line)), ..config() };
        let instance = Instance::new(Arc::new(config), 0);
        let mut out = Vec::new();
        out.extend(vec![b'a'; MAX_LINE_BYTES - 1]);
        out.push(b'\n');
        out.extend(vec![b'b'; MAX_LINE_BYTES + 10]);
        out.extend(b"\n\xff ok\r\n");
        instance.reader(std::io::Cursor::new(out), Stream::Stdout).await.unwrap();
        let lines = lines.lock().unwrap();
        let lengths: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(lengths[..3], [MAX_LINE_BYTES - 1, MAX_LINE_BYTES, 10], "{lengths:?}");
        assert_eq!(lines[3], "\u{fffd} ok", "not UTF-8 is shown, not dropped");
    }

    #[tokio::test]
    async fn a_missing_binary_is_an_error_naming_the_function() {
        let mut instance = Instance::new(Arc::new(config()), 0);
        let err = instance.invoke(Bytes::from_static(b"{}")).await.unwrap_err().to_string();
        assert!(err.contains("PublishMetrics") && err.contains("/nonexistent"), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_before_anything_starts() {
        let mut instance = Instance::new(Arc::new(config()), 0);
        let err = instance.invoke(Bytes::from(vec![b' '; MAX_PAYLOAD_BYTES + 1])).await.unwrap_err();
        assert!(matches!(err, Error::RequestTooLarge { .. }), "{err}");
    }
}
