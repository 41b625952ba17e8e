//! The Lambda Runtime API, version 2018-06-01, as a function's bootstrap sees it at
//! `http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/…`: `invocation/next` (long poll),
//! `invocation/{id}/response`, `invocation/{id}/error` and `init/error`. One server per
//! process, so a restarted process never sees its predecessor's invocations.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::MAX_RESPONSE_BYTES;

/// An error a function reported (`invocation/{id}/error` or `init/error`), as Lambda returns
/// it to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionError {
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// One invocation waiting for the runtime's `next` call.
pub(crate) struct Pending {
    pub request_id: String,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    /// The caller's `ClientContext` (base64 JSON), synchronous invocations only.
    pub client_context: Option<String>,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// What the runtime answered for one invocation.
#[derive(Debug)]
pub(crate) enum Reply {
    Response(Bytes),
    Error(FunctionError),
    /// The response was over Lambda's payload limit (the runtime got 413).
    TooLarge,
}

struct State {
    next: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_error: Mutex<Option<FunctionError>>,
    init_failed: Notify,
    /// The request ID of the invocation handed out last, for the log lines.
    current: Arc<Mutex<Option<String>>>,
    /// The runtime has asked for its first invocation: init is over.
    initialized: std::sync::atomic::AtomicBool,
    ready: Notify,
}

/// A Runtime API endpoint for one process: stops when dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub invocations: mpsc::Sender<Pending>,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(current: Arc<Mutex<Option<String>>>) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (invocations, next) = mpsc::channel(1);
        let state = Arc::new(State {
            next: tokio::sync::Mutex::new(next),
            in_flight: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            init_failed: Notify::new(),
            current,
            initialized: std::sync::atomic::AtomicBool::new(false),
            ready: Notify::new(),
        });
        let accept = crate::http::serve(listener, state.clone(), handle);
        Ok(Server { addr, invocations, state, accept })
    }

    /// Resolves when the process reports an initialization error.
    pub async fn init_failed(&self) -> FunctionError {
        loop {
            if let Some(e) = lock(&self.state.init_error).clone() {
                return e;
            }
            self.state.init_failed.notified().await;
        }
    }

    /// Resolves once the runtime has asked for its first invocation (the end of init).
    pub async fn ready(&self) {
        if !self.state.initialized.load(std::sync::atomic::Ordering::SeqCst) {
            self.state.ready.notified().await;
        }
    }

    pub fn init_error(&self) -> Option<FunctionError> {
        lock(&self.state.init_error).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A poisoned lock only means another request panicked; the map itself is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Body = Full<Bytes>;

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn accepted() -> Response<Body> {
    answer(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

fn refused(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    answer(status, serde_json::json!({"errorType": error_type, "errorMessage": message}))
}

/// Reads a body of at most Lambda's response limit; `Err` when over it.
async fn read_body(body: Incoming) -> Result<Bytes, ()> {
    match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(()),
    }
}

/// The error document a runtime posts; anything else keeps its raw text as the message.
fn function_error(header: Option<&str>, body: &[u8]) -> FunctionError {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        #[serde(rename = "errorMessage")]
        error_message: Option<String>,
    }
    let doc = serde_json::from_slice::<Doc>(body).ok();
    FunctionError {
        error_type: doc
            .as_ref()
            .and_then(|d| d.error_type.clone())
            .or_else(|| header.map(str::to_owned))
            .unwrap_or_else(|| "Unhandled".to_owned()),
        error_message: doc.and_then(|d| d.error_message).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let error_type =
        req.headers().get("Lambda-Runtime-Function-Error-Type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // As Lambda answers a call out of turn (Lambda Developer Guide, "Using the Lambda runtime
    // API for custom runtimes": 403 Forbidden on an invalid state transition): a response or
    // error with no invocation running, or init/error once init is over.
    let out_of_turn = |what: &str| refused(StatusCode::FORBIDDEN, "InvalidStateTransition", what);
    let settle = |id: &str| {
        let mut in_flight = lock(&state.in_flight);
        match in_flight.remove(id) {
            Some(reply) => Ok(reply),
            None if in_flight.is_empty() => {
                Err(Box::new(out_of_turn(&format!("no invocation is running to answer ({id})"))))
            }
            None => Err(Box::new(refused(StatusCode::BAD_REQUEST, "InvalidRequestID", &format!("no invocation {id}")))),
        }
    };
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => next(&state).await,
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "response"]) => {
            let reply = match settle(id) {
                Ok(reply) => reply,
                Err(answer) => return Ok(*answer),
            };
            match read_body(req.into_body()).await {
                Ok(body) => {
                    let _ = reply.send(Reply::Response(body));
                    accepted()
                }
                Err(()) => {
                    let _ = reply.send(Reply::TooLarge);
                    refused(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!("the response is over {MAX_RESPONSE_BYTES} bytes"),
                    )
                }
            }
        }
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "error"]) => {
            let reply = match settle(id) {
                Ok(reply) => reply,
                Err(answer) => return Ok(*answer),
            };
            let body = read_body(req.into_body()).await.unwrap_or_default();
            let _ = reply.send(Reply::Error(function_error(error_type.as_deref(), &body)));
            accepted()
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            if state.initialized.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(out_of_turn("init/error after the runtime asked for an invocation: init is over"));
            }
            let body = read_body(req.into_body()).await.unwrap_or_default();
            *lock(&state.init_error) = Some(function_error(error_type.as_deref(), &body));
            state.init_failed.notify_one();
            accepted()
        }
        _ => refused(StatusCode::NOT_FOUND, "NotFound", &format!("no such Runtime API path: {path}")),
    })
}

/// `invocation/next`: waits for the next invocation, as long as it takes.
async fn next(state: &State) -> Response<Body> {
    if !state.initialized.swap(true, std::sync::atomic::Ordering::SeqCst) {
        state.ready.notify_one();
    }
    let pending = state.next.lock().await.recv().await;
    let Some(p) = pending else {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, "ShuttingDown", "the environment is shutting down");
    };
    lock(&state.in_flight).insert(p.request_id.clone(), p.reply);
    *lock(&state.current) = Some(p.request_id.clone());
    let mut r = Response::new(Full::new(p.payload));
    let headers = r.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("Lambda-Runtime-Aws-Request-Id", &p.request_id);
    set("Lambda-Runtime-Deadline-Ms", &p.deadline_ms.to_string());
    set("Lambda-Runtime-Invoked-Function-Arn", &p.function_arn);
    set("Lambda-Runtime-Trace-Id", &p.trace_id);
    if let Some(context) = &p.client_context {
        set("Lambda-Runtime-Client-Context", context);
    }
    set("Content-Type", "application/json");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_and_raw_errors() {
        let e = function_error(None, br#"{"errorType":"Boom","errorMessage":"it broke"}"#);
        assert_eq!(e, FunctionError { error_type: "Boom".into(), error_message: "it broke".into() });
        let e = function_error(Some("Runtime.ExitError"), b"not json");
        assert_eq!(e, FunctionError { error_type: "Runtime.ExitError".into(), error_message: "not json".into() });
        let e = function_error(None, b"");
        assert_eq!(e.error_type, "Unhandled");
    }

    /// One raw HTTP/1.1 exchange; returns the status and the whole answer.
    async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{head}\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        (out[9..12].parse().unwrap(), out)
    }

    fn pending(id: &str) -> (Pending, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let p = Pending {
            request_id: id.into(),
            deadline_ms: 42,
            function_arn: "arn:aws:lambda:eu-west-1:1:function:F".into(),
            trace_id: "Root=1-0-0".into(),
            client_context: None,
            payload: Bytes::from_static(b"{\"n\":1}"),
            reply,
        };
        (p, rx)
    }

    #[tokio::test]
    async fn the_documented_paths_with_a_raw_client() {
        let current = Arc::new(Mutex::new(None));
        let server = Server::start(current.clone()).await.unwrap();
        let (p, rx) = pending("req-1");
        server.invocations.send(p).await.unwrap();
        let (status, answer) = raw(server.addr, "GET /2018-06-01/runtime/invocation/next HTTP/1.1", b"").await;
        assert_eq!(status, 200, "{answer}");
        let lower = answer.to_ascii_lowercase();
        for h in [
            "lambda-runtime-aws-request-id: req-1",
            "lambda-runtime-deadline-ms: 42",
            "lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-1:1:function:f",
            "lambda-runtime-trace-id: root=1-0-0",
        ] {
            assert!(lower.contains(h), "{h} in {answer}");
        }
        assert!(answer.ends_with("{\"n\":1}"));
        assert_eq!(current.lock().unwrap().as_deref(), Some("req-1"));

        // An error without a JSON document: the header names the type, the body is the message.
        let head = "POST /2018-06-01/runtime/invocation/req-1/error HTTP/1.1\r\nLambda-Runtime-Function-Error-Type: Runtime.Raw";
        assert_eq!(raw(server.addr, head, b"raw failure").await.0, 202);
        match rx.await.unwrap() {
            Reply::Error(e) => {
                assert_eq!((e.error_type.as_str(), e.error_message.as_str()), ("Runtime.Raw", "raw failure"))
            }
            other => panic!("{other:?}"),
        }
        // The invocation is settled: with nothing running, any answer is out of turn (403).
        for path in ["req-1/response", "req-1/error", "nope/response"] {
            let head = format!("POST /2018-06-01/runtime/invocation/{path} HTTP/1.1");
            assert_eq!(raw(server.addr, &head, b"{}").await.0, 403, "{path}");
        }
        // With one running, an answer for another ID is 400.
        let (p, rx4) = pending("req-4");
        server.invocations.send(p).await.unwrap();
        assert_eq!(raw(server.addr, "GET /2018-06-01/runtime/invocation/next HTTP/1.1", b"").await.0, 200);
        assert_eq!(raw(server.addr, "POST /2018-06-01/runtime/invocation/nope/response HTTP/1.1", b"{}").await.0, 400);
        assert_eq!(raw(server.addr, "POST /2018-06-01/runtime/invocation/req-4/response HTTP/1.1", b"{}").await.0, 202);
        assert!(matches!(rx4.await.unwrap(), Reply::Response(_)));
        assert_eq!(raw(server.addr, "GET /2018-06-01/runtime/whatever HTTP/1.1", b"").await.0, 404);
        assert_eq!(raw(server.addr, "DELETE /2018-06-01/runtime/invocation/next HTTP/1.1", b"").await.0, 404);

        // init/error once init is over (the runtime has asked for an invocation) is out of turn.
        let head = "POST /2018-06-01/runtime/init/error HTTP/1.1";
        let doc = br#"{"errorType":"Runtime.Init","errorMessage":"no config"}"#;
        assert_eq!(raw(server.addr, head, doc).await.0, 403);
        assert_eq!(server.init_error(), None);
        // During init it is recorded for the invoker; before any `next`, a response is out of turn.
        let fresh = Server::start(Arc::new(Mutex::new(None))).await.unwrap();
        assert_eq!(raw(fresh.addr, "POST /2018-06-01/runtime/invocation/x/response HTTP/1.1", b"{}").await.0, 403);
        assert_eq!(raw(fresh.addr, head, doc).await.0, 202);
        assert_eq!(fresh.init_failed().await.error_message, "no config");

        // A response of exactly Lambda's limit is taken; one byte more is refused with 413 and
        // the invocation fails.
        let (p, rx) = pending("req-3");
        server.invocations.send(p).await.unwrap();
        assert_eq!(raw(server.addr, "GET /2018-06-01/runtime/invocation/next HTTP/1.1", b"").await.0, 200);
        let most = vec![b'x'; crate::MAX_RESPONSE_BYTES];
        assert_eq!(raw(server.addr, "POST /2018-06-01/runtime/invocation/req-3/response HTTP/1.1", &most).await.0, 202);
        assert!(matches!(rx.await.unwrap(), Reply::Response(b) if b.len() == crate::MAX_RESPONSE_BYTES));
        let (p, rx) = pending("req-2");
        server.invocations.send(p).await.unwrap();
        assert_eq!(raw(server.addr, "GET /2018-06-01/runtime/invocation/next HTTP/1.1", b"").await.0, 200);
        let big = vec![b'x'; crate::MAX_RESPONSE_BYTES + 1];
        assert_eq!(raw(server.addr, "POST /2018-06-01/runtime/invocation/req-2/response HTTP/1.1", &big).await.0, 413);
        assert!(matches!(rx.await.unwrap(), Reply::TooLarge));
    }
}
