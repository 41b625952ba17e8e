//! Lambda's Invoke API (2015-03-31) on 127.0.0.1, for the AWS SDK, `aws lambda invoke
//! --endpoint-url` or another local component: `POST /2015-03-31/functions/{name}/invocations`.
//!
//! As the Lambda API Reference ("Invoke") and Developer Guide ("Invoking Lambda functions")
//! describe it: `RequestResponse` (200; a function's failure is `X-Amz-Function-Error:
//! Unhandled` with the error document as the payload, never an HTTP error), `Event` (202; queued,
//! run as capacity allows, retried twice after a failure, one and then two minutes later, kept at
//! most six hours while it waits), `DryRun` (204); `X-Amz-Log-Type: Tail` (the last 4 KB of the
//! invocation's log, base64, in `X-Amz-Log-Result`); `X-Amz-Executed-Version`; `ClientContext`
//! passed to the runtime; the documented errors (`ResourceNotFoundException` 404,
//! `RequestTooLargeException` 413, `InvalidRequestContentException` 400,
//! `TooManyRequestsException` 429 beyond the reserved concurrency). Warm environments are kept
//! per function and reused, at most as many as its reserved concurrency (or the account's
//! unreserved pool).
//!
//! Not emulated: versions and aliases (only `$LATEST`), resource policies and signatures (any
//! caller may invoke), on-failure destinations and dead-letter queues of asynchronous
//! invocations (an event that fails every attempt is reported as dropped), response streaming.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::function::{new_request_id, FunctionConfig, Instance, Invocation, InvokeContext, LogLine, Outcome};
use crate::{Error, ACCOUNT_CONCURRENCY, MAX_PAYLOAD_BYTES, MAX_RESPONSE_BYTES};

/// Largest asynchronous (`Event`) payload Lambda accepts: 1 MB (Lambda API Reference, "Invoke").
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How much of an invocation's log `X-Amz-Log-Type: Tail` returns: the last 4 KB (Lambda API
/// Reference, "Invoke": `LogResult`).
pub const LOG_TAIL_BYTES: usize = 4 * 1024;

/// Longest `ClientContext` Lambda accepts: 3583 bytes of base64 (Lambda API Reference,
/// "Invoke": `ClientContext`).
pub const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;

/// The most of an oversized request read before it is refused.
const READ_AT_MOST: usize = 4 * MAX_PAYLOAD_BYTES;

/// One function behind the API.
#[derive(Clone)]
pub struct Served {
    pub config: Arc<FunctionConfig>,
    /// At most this many environments at once; `None`: the account's unreserved pool.
    pub reserved_concurrency: Option<u32>,
}

/// How the API runs.
#[derive(Clone)]
pub struct ApiOptions {
    /// The port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// The concurrency of functions without a reserved one.
    pub unreserved_concurrency: u32,
    /// The waits before the retries of a failed asynchronous invocation (Lambda: two retries,
    /// one minute and then two minutes later; Lambda Developer Guide, "Asynchronous
    /// invocation").
    pub retry_delays: Vec<Duration>,
    /// How long an asynchronous event may wait for capacity before it is dropped (Lambda's
    /// default `MaximumEventAgeInSeconds`: six hours; Lambda API Reference,
    /// "PutFunctionEventInvokeConfig").
    pub max_event_age: Duration,
    /// Receives what the API did: each invocation, throttle, retry and dropped event.
    pub report: Arc<dyn Fn(ApiEvent) + Send + Sync>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            port: 0,
            unreserved_concurrency: ACCOUNT_CONCURRENCY,
            retry_delays: vec![Duration::from_secs(60), Duration::from_secs(120)],
            max_event_age: Duration::from_secs(6 * 3600),
            report: Arc::new(|_| {}),
        }
    }
}

/// `X-Amz-Invocation-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// What the API did, for the caller to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ApiEvent {
    Invoked {
        function: String,
        request_id: String,
        invocation_type: InvocationType,
        /// 1 for the first attempt of an asynchronous event, 2 and 3 for its retries.
        attempt: u32,
        /// `None` on success, else the error type Lambda reports.
        error: Option<String>,
        cold_start: bool,
        duration_ms: u64,
    },
    /// A synchronous invocation refused: every environment the concurrency allows is busy.
    Throttled { function: String, limit: u32 },
    /// A failed asynchronous event, to be tried again after `after_ms`.
    Retrying { function: String, request_id: String, attempt: u32, after_ms: u64 },
    /// An asynchronous event given up.
    Dropped { function: String, request_id: String, why: String },
}

impl std::fmt::Display for ApiEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiEvent::Invoked { function, request_id, invocation_type, attempt, error, cold_start, duration_ms } => {
                write!(f, "{function} {request_id} {invocation_type:?}")?;
                if *attempt > 1 {
                    write!(f, " (attempt {attempt})")?;
                }
                write!(f, ": {}", error.as_deref().unwrap_or("ok"))?;
                write!(f, " in {duration_ms} ms{}", if *cold_start { ", cold start" } else { "" })
            }
            ApiEvent::Throttled { function, limit } => {
                write!(f, "{function}: throttled (TooManyRequestsException): all {limit} environment(s) busy")
            }
            ApiEvent::Retrying { function, request_id, attempt, after_ms } => {
                write!(f, "{function} {request_id}: attempt {attempt} failed, retried in {} s", after_ms / 1000)
            }
            ApiEvent::Dropped { function, request_id, why } => write!(f, "{function} {request_id}: dropped: {why}"),
        }
    }
}

/// An invocation's log lines, kept for `X-Amz-Log-Type: Tail`.
#[derive(Default)]
struct Tail {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// Kept per environment: enough for the last 4 KB of one invocation's lines.
const TAIL_KEPT_BYTES: usize = 64 * 1024;

impl Tail {
    fn push(&mut self, line: LogLine) {
        self.bytes += line.line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > TAIL_KEPT_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.line.len() + 1,
                None => break,
            }
        }
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }

    /// The last [`LOG_TAIL_BYTES`] of what `request_id` (and the init before it) wrote, and
    /// forgets everything.
    fn take(&mut self, request_id: &str) -> Vec<u8> {
        let mut text = Vec::new();
        for l in self.lines.drain(..) {
            if l.request_id.as_deref().is_none_or(|id| id == request_id) {
                text.extend_from_slice(l.line.as_bytes());
                text.push(b'\n');
            }
        }
        self.bytes = 0;
        text.split_off(text.len().saturating_sub(LOG_TAIL_BYTES))
    }
}

/// An execution environment and its log tail.
struct Env {
    instance: Instance,
    tail: Arc<Mutex<Tail>>,
}

/// One function's environments and its queue of asynchronous events.
struct Pool {
    config: Arc<FunctionConfig>,
    limit: u32,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Env>>,
    started: AtomicUsize,
    queue: mpsc::UnboundedSender<Queued>,
}

/// An asynchronous event waiting for its (next) attempt.
struct Queued {
    request_id: String,
    payload: Bytes,
    received: Instant,
    attempt: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// A warm environment, or a new one (its process starts on its first invocation).
    fn take(&self) -> Env {
        if let Some(env) = lock(&self.idle).pop() {
            return env;
        }
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (keep, sink) = (tail.clone(), self.config.logs.clone());
        let config = FunctionConfig {
            logs: Arc::new(move |line: LogLine| {
                lock(&keep).push(line.clone());
                sink(line)
            }),
            ..(*self.config).clone()
        };
        Env { instance: Instance::new(Arc::new(config), self.started.fetch_add(1, Ordering::SeqCst)), tail }
    }

    /// One invocation in a free environment (the caller holds a permit), and with `tail` the end
    /// of its log; the environment is kept warm for the next.
    async fn invoke(&self, payload: Bytes, context: InvokeContext, tail: bool) -> (Result<Invocation, Error>, Vec<u8>) {
        let mut env = self.take();
        let request_id = context.request_id.clone().unwrap_or_else(new_request_id);
        lock(&env.tail).clear();
        let result =
            env.instance.invoke_with(payload, InvokeContext { request_id: Some(request_id.clone()), ..context }).await;
        if tail {
            // The last lines a runtime wrote before answering may still be in its pipe.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tail = lock(&env.tail).take(&request_id);
        lock(&self.idle).push(env);
        (result, tail)
    }

    async fn shutdown(&self) {
        let idle: Vec<Env> = lock(&self.idle).drain(..).collect();
        for mut env in idle {
            env.instance.shutdown().await;
        }
    }
}

/// How Lambda reports a failed invocation to its caller: the `errorType` and `errorMessage` of
/// the payload; `None` when the function answered.
fn failure(invocation: &Invocation) -> Option<(String, String)> {
    let id = &invocation.request_id;
    let exited = |why: &str| format!("RequestId: {id} Error: Runtime exited with error: {why}");
    let message = match &invocation.outcome {
        Outcome::Response(_) => return None,
        // The function's (or its init's) own error document.
        Outcome::FunctionError(e) | Outcome::InitError(e) => {
            return Some((e.error_type.clone(), e.error_message.clone()))
        }
        Outcome::Timeout(t) => {
            let message = format!("RequestId: {id} Error: Task timed out after {:.2} seconds", t.as_secs_f64());
            return Some(("Sandbox.Timedout".to_owned(), message));
        }
        Outcome::Crashed(why) => exited(why),
        Outcome::OutOfMemory { .. } => exited("signal: killed"),
        Outcome::ResponseTooLarge => {
            format!("Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        }
    };
    let error_type = invocation.outcome.platform_error_type().unwrap_or("Unhandled");
    Some((error_type.to_owned(), message))
}

/// The payload Lambda returns for an invocation, and whether it is an error document.
pub fn response_payload(invocation: &Invocation) -> (Bytes, bool) {
    match (&invocation.outcome, failure(invocation)) {
        (Outcome::Response(body), _) => (body.clone(), false),
        (_, failed) => {
            let (error_type, message) = failed.unwrap_or_default();
            let doc = serde_json::json!({"errorType": error_type, "errorMessage": message});
            (Bytes::from(doc.to_string()), true)
        }
    }
}

/// The error type an invocation's outcome reports, `None` on success.
fn error_type(invocation: &Invocation) -> Option<String> {
    failure(invocation).map(|(error_type, _)| error_type)
}

/// The Invoke API, serving until dropped or shut down.
pub struct InvokeApi {
    pub addr: SocketAddr,
    pools: Arc<BTreeMap<String, Arc<Pool>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Api {
    pools: Arc<BTreeMap<String, Arc<Pool>>>,
    options: ApiOptions,
}

impl InvokeApi {
    /// Serves `functions` on 127.0.0.1.
    pub async fn start(functions: Vec<Served>, options: ApiOptions) -> Result<InvokeApi, Error> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| Error::Serve { port: options.port, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Serve { port: options.port, source })?;
        let mut pools = BTreeMap::new();
        let mut queues = Vec::new();
        for f in functions {
            let limit = f.reserved_concurrency.unwrap_or(options.unreserved_concurrency);
            let (queue, events) = mpsc::unbounded_channel();
            let pool = Arc::new(Pool {
                config: f.config.clone(),
                limit,
                permits: Arc::new(Semaphore::new(limit as usize)),
                idle: Mutex::new(Vec::new()),
                started: AtomicUsize::new(0),
                queue,
            });
            queues.push((pool.clone(), events));
            pools.insert(f.config.name.clone(), pool);
        }
        let pools = Arc::new(pools);
        let mut tasks: Vec<_> =
            queues.into_iter().map(|(pool, events)| tokio::spawn(deliver(pool, events, options.clone()))).collect();
        let api = Arc::new(Api { pools: pools.clone(), options });
        tasks.push(crate::http::serve(listener, api, handle));
        Ok(InvokeApi { addr, pools, tasks })
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and the warm environments' processes; asynchronous events still queued
    /// are dropped.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for pool in self.pools.values() {
            pool.shutdown().await;
        }
    }
}

impl Drop for InvokeApi {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs a function's asynchronous events as capacity allows, retrying failures.
async fn deliver(pool: Arc<Pool>, mut events: mpsc::UnboundedReceiver<Queued>, options: ApiOptions) {
    let name = pool.config.name.clone();
    while let Some(event) = events.recv().await {
        let left = options.max_event_age.saturating_sub(event.received.elapsed());
        let permit = match tokio::time::timeout(left, pool.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return,
            Err(_) => {
                (options.report)(ApiEvent::Dropped {
                    function: name.clone(),
                    request_id: event.request_id,
                    why: format!(
                        "no capacity within the maximum event age ({} s, MaximumEventAgeInSeconds)",
                        options.max_event_age.as_secs()
                    ),
                });
                continue;
            }
        };
        let (pool, options, name) = (pool.clone(), options.clone(), name.clone());
        tokio::spawn(async move {
            let context = InvokeContext { request_id: Some(event.request_id.clone()), client_context: None };
            let (result, _) = pool.invoke(event.payload.clone(), context, false).await;
            drop(permit);
            let failure = match result {
                Ok(invocation) => {
                    let error = error_type(&invocation);
                    (options.report)(ApiEvent::Invoked {
                        function: name.clone(),
                        request_id: event.request_id.clone(),
                        invocation_type: InvocationType::Event,
                        attempt: event.attempt,
                        error: error.clone(),
                        cold_start: invocation.cold_start,
                        duration_ms: invocation.duration.as_millis() as u64,
                    });
                    error
                }
                Err(e) => Some(e.to_string()),
            };
            let Some(failure) = failure else { return };
            match options.retry_delays.get(event.attempt as usize - 1) {
                Some(&after) => {
                    (options.report)(ApiEvent::Retrying {
                        function: name,
                        request_id: event.request_id.clone(),
                        attempt: event.attempt,
                        after_ms: after.as_millis() as u64,
                    });
                    tokio::time::sleep(after).await;
                    let _ = pool.queue.send(Queued { attempt: event.attempt + 1, ..event });
                }
                None => (options.report)(ApiEvent::Dropped {
                    function: name,
                    request_id: event.request_id,
                    why: format!(
                        "{failure} on each of {} attempt(s) (no on-failure destination or DLQ here)",
                        event.attempt
                    ),
                }),
            }
        });
    }
}

/// A refusal, as Lambda's REST-JSON protocol answers it.
#[derive(Debug, PartialEq, Eq)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    reason: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), reason: None }
    }

    fn not_found(arn: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", format!("Function not found: {arn}"))
    }

    fn response(&self) -> Response<Body> {
        let kind = if self.status.is_server_error() { "Service" } else { "User" };
        let mut doc = serde_json::json!({"Type": kind, "message": self.message});
        if let Some(reason) = self.reason {
            doc["Reason"] = reason.into();
        }
        let mut r = Response::new(Full::new(Bytes::from(doc.to_string())));
        *r.status_mut() = self.status;
        let headers = r.headers_mut();
        headers.insert("x-amzn-ErrorType", hyper::header::HeaderValue::from_static(self.code));
        headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        r
    }
}

type Body = Full<Bytes>;

/// `%XX` escapes decoded (the SDK escapes the `:` of an ARN in the path).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A `FunctionName` as Lambda takes it (a name, a partial ARN `ACCOUNT:function:NAME` or an ARN,
/// each with an optional `:QUALIFIER`): the function's name, the account and region it names,
/// and the qualifier.
#[derive(Debug, PartialEq, Eq)]
struct Named<'a> {
    name: &'a str,
    region: Option<&'a str>,
    account: Option<&'a str>,
    qualifier: Option<&'a str>,
}

fn parse_name(text: &str) -> Option<Named<'_>> {
    let parts: Vec<&str> = text.split(':').collect();
    let named = match parts.as_slice() {
        [name] => Named { name, region: None, account: None, qualifier: None },
        [name, q] => Named { name, region: None, account: None, qualifier: Some(q) },
        [account, "function", name] => Named { name, region: None, account: Some(account), qualifier: None },
        [account, "function", name, q] => Named { name, region: None, account: Some(account), qualifier: Some(q) },
        ["arn", _, "lambda", region, account, "function", name] => {
            Named { name, region: Some(region), account: Some(account), qualifier: None }
        }
        ["arn", _, "lambda", region, account, "function", name, q] => {
            Named { name, region: Some(region), account: Some(account), qualifier: Some(q) }
        }
        _ => return None,
    };
    let valid = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_$.".contains(&b))
    };
    (valid(named.name, 64) && named.qualifier.is_none_or(|q| valid(q, 128))).then_some(named)
}

/// The query parameter `name`'s value, decoded (the SDK sends `$LATEST` as `%24LATEST`).
fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    let raw = req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    percent_decode(raw)
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The pool `text` names, or the error Lambda answers.
fn resolve<'a>(api: &'a Api, text: &str, qualifier: Option<&str>) -> Result<&'a Arc<Pool>, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!("1 validation error detected: Value '{text}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        )
    };
    let named = parse_name(text).ok_or_else(invalid)?;
    let qualifier = match (named.qualifier, qualifier) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "The derived qualifier from the function name does not match the specified qualifier.",
            ))
        }
        (a, b) => a.or(b),
    };
    let pool = api.pools.get(named.name);
    let arn = pool.map_or_else(|| format!("function:{}", named.name), |p| p.config.arn());
    let Some(pool) = pool else { return Err(ApiError::not_found(&arn)) };
    let here = named.region.is_none_or(|r| r == pool.config.region)
        && named.account.is_none_or(|a| a == pool.config.account_id);
    match qualifier {
        _ if !here => Err(ApiError::not_found(text)),
        None | Some("$LATEST") => Ok(pool),
        Some(q) => Err(ApiError::not_found(&format!("{arn}:{q}"))),
    }
}

async fn handle(api: Arc<Api>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match invoke(&api, req).await {
        Ok(r) => r,
        Err(e) => e.response(),
    })
}

async fn invoke(api: &Api, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let name = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .filter(|_| req.method() == Method::POST)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("{} {path}: only Invoke is served here", req.method()),
            )
        })?;
    let name = percent_decode(name).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", "the function name is not valid")
    })?;
    let pool = resolve(api, &name, query(&req, "Qualifier").as_deref())?.clone();
    let kind = match header(&req, "X-Amz-Invocation-Type") {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("Event") => InvocationType::Event,
        Some("DryRun") => InvocationType::DryRun,
        Some(other) => return Err(enum_error(other, "invocationType", "[Event, RequestResponse, DryRun]")),
    };
    let tail = match header(&req, "X-Amz-Log-Type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => return Err(enum_error(other, "logType", "[None, Tail]")),
    };
    let client_context = header(&req, "X-Amz-Client-Context").map(str::to_owned);
    if let Some(context) = &client_context {
        let decoded = base64::engine::general_purpose::STANDARD.decode(context).ok();
        let object =
            decoded.and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok()).is_some_and(|v| v.is_object());
        if context.len() > MAX_CLIENT_CONTEXT_BYTES || !object {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                format!("Client context must be a valid Base64-encoded JSON object of at most {MAX_CLIENT_CONTEXT_BYTES} bytes."),
            ));
        }
    }
    let limit = if kind == InvocationType::Event { MAX_ASYNC_PAYLOAD_BYTES } else { MAX_PAYLOAD_BYTES };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        )
    };
    // Read whole before refusing, as Lambda does: answering mid-upload breaks the caller's
    // connection instead of telling it why. Beyond READ_AT_MOST the connection is dropped.
    let Ok(body) = Limited::new(req.into_body(), READ_AT_MOST).collect().await else { return Err(too_large()) };
    let mut payload = body.to_bytes();
    if payload.len() > limit {
        return Err(too_large());
    }
    // No payload is an empty object, as Lambda passes it.
    if payload.iter().all(u8::is_ascii_whitespace) {
        payload = Bytes::from_static(b"{}");
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        ));
    }
    let request_id = new_request_id();
    let mut r = Response::new(Full::new(Bytes::new()));
    let set = |r: &mut Response<Body>, name: &'static str, value: &str| {
        if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
            r.headers_mut().insert(name, v);
        }
    };
    set(&mut r, "x-amzn-RequestId", &request_id);
    match kind {
        InvocationType::DryRun => *r.status_mut() = StatusCode::NO_CONTENT,
        InvocationType::Event => {
            let queued = Queued { request_id, payload, received: Instant::now(), attempt: 1 };
            pool.queue.send(queued).map_err(|_| shutting_down())?;
            *r.status_mut() = StatusCode::ACCEPTED;
        }
        InvocationType::RequestResponse => {
            let Ok(permit) = pool.permits.clone().try_acquire_owned() else {
                (api.options.report)(ApiEvent::Throttled { function: pool.config.name.clone(), limit: pool.limit });
                return Err(ApiError {
                    reason: Some("ReservedFunctionConcurrentInvocationLimitExceeded"),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.")
                });
            };
            let context = InvokeContext { request_id: Some(request_id.clone()), client_context };
            let (result, log) = pool.invoke(payload, context, tail).await;
            drop(permit);
            let invocation = result
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", format!("{e}")))?;
            let (body, failed) = response_payload(&invocation);
            (api.options.report)(ApiEvent::Invoked {
                function: pool.config.name.clone(),
                request_id,
                invocation_type: kind,
                attempt: 1,
                error: error_type(&invocation),
                cold_start: invocation.cold_start,
                duration_ms: invocation.duration.as_millis() as u64,
            });
            *r.body_mut() = Full::new(body);
            set(&mut r, "X-Amz-Executed-Version", "$LATEST");
            set(&mut r, "Content-Type", "application/json");
            if failed {
                set(&mut r, "X-Amz-Function-Error", "Unhandled");
            }
            if tail {
                set(&mut r, "X-Amz-Log-Result", &base64::engine::general_purpose::STANDARD.encode(log));
            }
        }
    }
    Ok(r)
}

fn enum_error(value: &str, member: &str, allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!("1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: {allowed}"),
    )
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceException", "the local Invoke API is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_in_each_form_lambda_takes() {
        let plain = Named { name: "PublishMetrics", region: None, account: None, qualifier: None };
        assert_eq!(parse_name("PublishMetrics"), Some(plain));
        assert_eq!(parse_name("PublishMetrics:$LATEST").unwrap().qualifier, Some("$LATEST"));
        let partial = parse_name("123456789012:function:PublishMetrics:7").unwrap();
        assert_eq!((partial.account, partial.qualifier), (Some("123456789012"), Some("7")));
        let arn = parse_name("arn:aws:lambda:eu-west-1:123456789012:function:PublishMetrics").unwrap();
        assert_eq!((arn.name, arn.region, arn.account), ("PublishMetrics", Some("eu-west-1"), Some("123456789012")));
        for bad in ["", "a b", "x:y:z", "arn:aws:s3:::bucket", &"n".repeat(65), "f:"] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
        assert!(parse_name(&"n".repeat(64)).is_some(), "64 characters is the longest name");
    }

    #[test]
    fn escapes_are_decoded_and_broken_ones_refused() {
        assert_eq!(percent_decode("arn%3Aaws%3Alambda").as_deref(), Some("arn:aws:lambda"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%3"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }

    fn line(request_id: Option<&str>, text: &str) -> LogLine {
        LogLine {
            function: "f".into(),
            request_id: request_id.map(str::to_owned),
            stream: crate::Stream::Stdout,
            line: text.into(),
        }
    }

    #[test]
    fn the_tail_is_the_last_4_kb_of_this_invocation_and_its_init() {
        let mut tail = Tail::default();
        tail.push(line(None, "INIT_START"));
        tail.push(line(Some("other"), "not mine"));
        tail.push(line(Some("r1"), "START r1"));
        assert_eq!(tail.take("r1"), b"INIT_START\nSTART r1\n");
        assert!(tail.take("r1").is_empty(), "taken once");
        for i in 0..1000 {
            tail.push(line(Some("r2"), &format!("line {i:04}")));
        }
        let text = tail.take("r2");
        assert_eq!(text.len(), LOG_TAIL_BYTES);
        assert!(text.ends_with(b"line 0999\n"));
        // What an environment keeps is bounded, whatever a function writes.
        for _ in 0..100_000 {
            tail.push(line(Some("r3"), "x"));
        }
        assert!(tail.bytes <= TAIL_KEPT_BYTES && tail.lines.len() <= TAIL_KEPT_BYTES / 2);
    }

    fn invocation(outcome: Outcome) -> Invocation {
        Invocation { request_id: "r".into(), outcome, duration: Duration::ZERO, cold_start: false }
    }

    #[test]
    fn each_outcome_is_answered_with_lambdas_payload() {
        let ok = invocation(Outcome::Response(Bytes::from_static(b"{\"n\":1}")));
        assert_eq!(response_payload(&ok), (Bytes::from_static(b"{\"n\":1}"), false));
        let cases = [
            (
                Outcome::Timeout(Duration::from_secs(3)),
                "Sandbox.Timedout",
                "RequestId: r Error: Task timed out after 3.00 seconds",
            ),
            (
                Outcome::Crashed("exit status: 3".into()),
                "Runtime.ExitError",
                "RequestId: r Error: Runtime exited with error: exit status: 3",
            ),
            (
                Outcome::OutOfMemory { used_mb: 129 },
                "Runtime.OutOfMemory",
                "RequestId: r Error: Runtime exited with error: signal: killed",
            ),
            (
                Outcome::ResponseTooLarge,
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
            ),
            (
                Outcome::FunctionError(crate::FunctionError {
                    error_type: "Boom".into(),
                    error_message: "it broke".into(),
                }),
                "Boom",
                "it broke",
            ),
        ];
        for (outcome, error_type, message) in cases {
            let (payload, failed) = response_payload(&invocation(outcome));
            assert!(failed);
            let doc: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(doc, serde_json::json!({"errorType": error_type, "errorMessage": message}));
        }
    }
}
