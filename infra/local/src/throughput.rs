//! DynamoDB's provisioned write capacity in front of a local endpoint that ignores it (moto,
//! DynamoDB Local and LocalStack all do): an HTTP proxy the functions call instead of the
//! endpoint. It passes every request through, and meters DynamoDB's writes as DynamoDB does:
//!
//! - each write is charged by DynamoDB's size rules ("Item sizes and formats"; implemented
//!   here on the wire format, apart from the handler's own reckoning): one WCU per started KB
//!   of the larger of the item before and after the write, twice that inside a transaction
//!   ("Capacity management for transactions"); a conditional write whose condition fails still
//!   consumes ("Read/write capacity mode": a failed conditional write is charged);
//! - per table, a token bucket refilled at the provisioned WCU, keeping up to 300 seconds of
//!   unused capacity as burst (DynamoDB Developer Guide, "Burst capacity"), empty at the start
//!   unless asked: burst is best effort on AWS, so a run should not start with it;
//! - a write the bucket cannot pay for is answered as DynamoDB answers it and never reaches the
//!   endpoint: `ProvisionedThroughputExceededException` for a single write, and for a
//!   transaction a `TransactionCanceledException` whose reasons give
//!   `ProvisionedThroughputExceeded` for the items of that table (TransactWriteItems' API
//!   reference: the code for a provisioned table; `ThrottlingError` is an on-demand table's).
//!
//! The clock runs `1 / time_scale` times as fast as AWS's, as the rest of a scaled run does.
//! Every charge is recorded with its time, for the run's graphs and summary.
//!
//! Metered writes reach the endpoint one at a time. moto's TransactWriteItems is not isolated:
//! it undoes a cancelled transaction by restoring a copy of the whole table taken when it
//! began, which also undoes every write another transaction committed meanwhile (seen here: 90
//! concurrent writers lost an order's counters and its dedupe record). DynamoDB's transactions
//! are serializable, so serializing them here loses nothing AWS would keep.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::LocalError;

/// Seconds of unused capacity a table keeps for a burst (DynamoDB Developer Guide, "Burst
/// capacity": "DynamoDB currently retains up to 5 minutes (300 seconds) of unused read and
/// write capacity").
pub const BURST_SECS: f64 = 300.0;

/// Transactional writes cost twice a standard write per item (DynamoDB Developer Guide,
/// "Capacity management for transactions").
pub const TRANSACTION_FACTOR: u64 = 2;

/// A write capacity unit covers one write of an item up to 1 KB.
pub const WCU_BYTES: usize = 1024;

/// The largest request body passed through (BatchWriteItem's 16 MB, with room).
const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

const THROTTLED_MESSAGE: &str = "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.";

/// Whether a table's burst bucket starts empty or full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Burst {
    Empty,
    Full,
}

/// One table's provisioned write capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    pub table: String,
    pub wcu: u32,
}

/// One write as metered: when (since the proxy started), on which table, its WCU, and whether
/// it was refused for throughput (then nothing was written).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Charge {
    pub at: Duration,
    pub table: String,
    pub operation: &'static str,
    pub wcu: u64,
    pub throttled: bool,
}

/// A token bucket of write capacity.
#[derive(Clone, Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(wcu: u32, time_scale: f64, burst: Burst, now: Instant) -> Self {
        let capacity = f64::from(wcu) * BURST_SECS;
        let tokens = match burst {
            Burst::Empty => 0.0,
            Burst::Full => capacity,
        };
        Bucket { rate: f64::from(wcu) / time_scale, capacity, tokens, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let accrued = self.rate * now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + accrued).min(self.capacity);
        self.updated = now;
    }

    /// Takes `wcu` if the bucket holds them.
    fn take(&mut self, wcu: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= wcu as f64 {
            self.tokens -= wcu as f64;
            true
        } else {
            false
        }
    }

    /// Gives back (or, negative, takes more): what a write turned out to cost.
    fn adjust(&mut self, wcu: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + wcu).min(self.capacity);
    }
}

/// The proxy: stops when dropped.
pub struct Throughput {
    /// Where the functions send their requests.
    pub endpoint: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Throughput {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

struct State {
    upstream: SocketAddr,
    started: Instant,
    /// Held while a metered write is read, forwarded and read again (see the module's doc).
    writing: tokio::sync::Mutex<()>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Key attribute names per table, from DescribeTable.
    keys: Mutex<HashMap<String, Vec<String>>>,
    ledger: Mutex<Vec<Charge>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Throughput {
    /// Starts the proxy on 127.0.0.1 in front of `upstream` (`http://127.0.0.1:PORT`), metering
    /// the `tables` listed; writes to other tables pass unmetered.
    pub async fn start(
        upstream: &str,
        tables: &[Provisioned],
        time_scale: f64,
        burst: Burst,
    ) -> Result<Throughput, LocalError> {
        let addr = upstream
            .strip_prefix("http://")
            .and_then(|a| a.trim_end_matches('/').parse::<SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
            .ok_or_else(|| {
                LocalError::Throughput(format!("{upstream} is not a local endpoint (http://127.0.0.1:PORT)"))
            })?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| LocalError::Throughput(format!("cannot listen on 127.0.0.1: {e}")))?;
        let endpoint = format!(
            "http://{}",
            listener.local_addr().map_err(|e| LocalError::Throughput(format!("no local address: {e}")))?
        );
        let now = Instant::now();
        let buckets = tables.iter().map(|t| (t.table.clone(), Bucket::new(t.wcu, time_scale, burst, now))).collect();
        let state = Arc::new(State {
            upstream: addr,
            started: now,
            writing: tokio::sync::Mutex::new(()),
            buckets: Mutex::new(buckets),
            keys: Mutex::new(HashMap::new()),
            ledger: Mutex::new(Vec::new()),
        });
        let serving = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Throughput { endpoint, state, accept })
    }

    /// Every write metered so far, in the order they arrived.
    pub fn ledger(&self) -> Vec<Charge> {
        let mut ledger = lock(&self.state.ledger).clone();
        ledger.sort_by_key(|c| c.at);
        ledger
    }

    /// When the proxy started: the zero of the charges' times.
    pub fn started(&self) -> Instant {
        self.state.started
    }
}

/// One item a write touches: its table, its key, the item a put leaves, and whether it is part
/// of a transaction.
#[derive(Clone, Debug, PartialEq)]
struct Touch {
    table: String,
    key: Option<Value>,
    put: Option<Value>,
}

/// A DynamoDB write request, as metered.
#[derive(Clone, Debug, PartialEq)]
struct Write {
    operation: &'static str,
    transactional: bool,
    touches: Vec<Touch>,
}

const WRITES: [&str; 5] = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"];

/// The write in `body` for DynamoDB operation `operation`, or `None` for anything else.
fn parse_write(operation: &str, body: &Value) -> Option<Write> {
    let operation = *WRITES.iter().find(|w| **w == operation)?;
    let table = |v: &Value| v.get("TableName").and_then(Value::as_str).unwrap_or_default().to_owned();
    let touch = |v: &Value, put: bool| Touch {
        table: table(v),
        key: v.get("Key").cloned(),
        put: if put { v.get("Item").cloned() } else { None },
    };
    let touches = match operation {
        "PutItem" => vec![touch(body, true)],
        "UpdateItem" | "DeleteItem" => vec![touch(body, false)],
        "TransactWriteItems" => body
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, v) = item.as_object()?.iter().next()?;
                Some(touch(v, kind == "Put"))
            })
            .collect(),
        _ => body
            .get("RequestItems")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .flat_map(|(t, requests)| {
                requests.as_array().into_iter().flatten().filter_map(move |r| {
                    if let Some(put) = r.get("PutRequest") {
                        Some(Touch { table: t.clone(), key: None, put: put.get("Item").cloned() })
                    } else {
                        r.get("DeleteRequest").map(|d| Touch {
                            table: t.clone(),
                            key: d.get("Key").cloned(),
                            put: None,
                        })
                    }
                })
            })
            .collect(),
    };
    Some(Write { operation, transactional: operation == "TransactWriteItems", touches })
}

/// Bytes DynamoDB counts for an attribute value in the wire format (`{"S": ...}`, `{"N": ...}`,
/// ...): strings and binaries by length, numbers at one byte per two significant digits plus
/// one, booleans and nulls one byte, lists and maps 3 bytes plus one per element plus their
/// contents.
pub fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else { return 0 };
    let string = |v: &Value| v.as_str().map_or(0, str::len);
    let binary = |v: &Value| v.as_str().map_or(0, base64_len);
    let number = |v: &Value| v.as_str().map_or(0, number_size);
    let each = |f: &dyn Fn(&Value) -> usize| inner.as_array().map_or(0, |a| a.iter().map(f).sum());
    match kind.as_str() {
        "S" => string(inner),
        "N" => number(inner),
        "B" => binary(inner),
        "BOOL" | "NULL" => 1,
        "SS" => each(&string),
        "NS" => each(&number),
        "BS" => each(&binary),
        "L" => 3 + inner.as_array().map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum()),
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum()),
        _ => 0,
    }
}

/// A number's size: its significant digits (leading and trailing zeros trimmed), one byte per
/// two, plus one.
fn number_size(n: &str) -> usize {
    let digits: String = n.chars().take_while(|c| *c != 'e' && *c != 'E').filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

/// Decoded length of base64 text.
fn base64_len(b: &str) -> usize {
    let padding = b.bytes().rev().take_while(|c| *c == b'=').count();
    (b.len() / 4 * 3).saturating_sub(padding)
}

/// An item's size: attribute names plus values.
pub fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

/// Write capacity of writing an item whose larger state (before or after) is `bytes`.
pub fn write_units(bytes: usize, transactional: bool) -> u64 {
    let units = bytes.max(1).div_ceil(WCU_BYTES) as u64;
    if transactional {
        units * TRANSACTION_FACTOR
    } else {
        units
    }
}

/// How the endpoint answered a write, as far as metering goes.
#[derive(Debug, PartialEq, Eq)]
enum Answered {
    Written,
    /// A condition failed: nothing written, capacity consumed.
    ConditionFailed,
    /// Refused for another reason: nothing written, nothing consumed.
    Refused,
}

fn answered(status: StatusCode, body: &[u8]) -> Answered {
    if status.is_success() {
        return Answered::Written;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Answered::Refused };
    let kind = v.get("__type").and_then(Value::as_str).unwrap_or_default();
    let condition = kind.ends_with("ConditionalCheckFailedException")
        || (kind.ends_with("TransactionCanceledException")
            && v.get("CancellationReasons").and_then(Value::as_array).is_some_and(|r| {
                r.iter().any(|r| r.get("Code").and_then(Value::as_str) == Some("ConditionalCheckFailed"))
            }));
    if condition {
        Answered::ConditionFailed
    } else {
        Answered::Refused
    }
}

type Body = Full<Bytes>;

fn json_error(body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    let h = r.headers_mut();
    h.insert("content-type", hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"));
    if let Ok(id) = hyper::header::HeaderValue::from_str(&uuid_like()) {
        h.insert("x-amzn-requestid", id);
    }
    r
}

/// A request ID of DynamoDB's shape (52 upper-case letters and digits), unique enough here.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:0>52X}").chars().rev().take(52).collect()
}

/// DynamoDB's answer to a write refused for throughput: `throttled` marks, per item, whether its
/// table was short of capacity.
fn throttled_answer(write: &Write, throttled: &[bool]) -> Response<Body> {
    if write.transactional {
        let reasons: Vec<Value> = throttled
            .iter()
            .map(|t| {
                if *t {
                    serde_json::json!({"Code": "ProvisionedThroughputExceeded", "Message": THROTTLED_MESSAGE})
                } else {
                    serde_json::json!({"Code": "None"})
                }
            })
            .collect();
        let codes: Vec<&str> =
            throttled.iter().map(|t| if *t { "ProvisionedThroughputExceeded" } else { "None" }).collect();
        json_error(serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
                "CancellationReasons": reasons,
        }))
    } else {
        json_error(serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": THROTTLED_MESSAGE,
        }))
    }
}

impl State {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        // A write is charged as of its arrival, the moment its writer paid for it.
        let arrived = Instant::now();
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return self.failed(format!("cannot read the request: {e}")),
        };
        let operation = parts
            .headers
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
            .map(str::to_owned);
        let write = operation
            .as_deref()
            .and_then(|op| serde_json::from_slice::<Value>(&body).ok().and_then(|v| parse_write(op, &v)))
            .filter(|w| w.touches.iter().any(|t| lock(&self.buckets).contains_key(&t.table)));
        let Some(write) = write else {
            return match self.forward(parts, body).await {
                Ok((status, headers, body)) => rebuild(status, headers, body),
                Err(e) => self.failed(e),
            };
        };
        self.metered(write, arrived, parts, body).await
    }

    fn failed(&self, why: String) -> Response<Body> {
        let mut r = Response::new(Full::new(Bytes::from(why)));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    }

    /// The write's cost per touched item, from the items' sizes before it (and a put's new
    /// item): what it is charged up front.
    async fn cost_before(&self, write: &Write) -> Result<Vec<(u64, usize)>, String> {
        let mut out = Vec::with_capacity(write.touches.len());
        for t in &write.touches {
            let key = match (&t.key, &t.put) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(item)) => self.key_of(&t.table, item).await?,
                (None, None) => None,
            };
            let before = match key {
                Some(k) => self.item_size(&t.table, &k).await?,
                None => 0,
            };
            let bytes = before.max(t.put.as_ref().map_or(0, item_size));
            out.push((write_units(bytes, write.transactional), before));
        }
        Ok(out)
    }

    async fn metered(
        &self,
        write: Write,
        arrived: Instant,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Body> {
        let _serialized = self.writing.lock().await;
        let costs = match self.cost_before(&write).await {
            Ok(c) => c,
            Err(e) => return self.failed(e),
        };
        // Per table: what this write costs it.
        let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
        for (t, (wcu, _)) in write.touches.iter().zip(&costs) {
            *per_table.entry(t.table.as_str()).or_default() += wcu;
        }
        let now = Instant::now();
        let short: Vec<&str> = {
            let mut buckets = lock(&self.buckets);
            let short: Vec<&str> = per_table
                .iter()
                .filter(|(table, wcu)| buckets.get(**table).is_some_and(|b| !b.clone().take(**wcu, now)))
                .map(|(table, _)| *table)
                .collect();
            if short.is_empty() {
                // Paid up front, all or nothing, so concurrent writes cannot spend the same units.
                for (table, wcu) in &per_table {
                    if let Some(b) = buckets.get_mut(*table) {
                        b.take(*wcu, now);
                    }
                }
            }
            short
        };
        if !short.is_empty() {
            let mut ledger = lock(&self.ledger);
            for table in &short {
                ledger.push(Charge {
                    at: arrived - self.started,
                    table: (*table).to_owned(),
                    operation: write.operation,
                    wcu: per_table[table],
                    throttled: true,
                });
            }
            let throttled: Vec<bool> = write.touches.iter().map(|t| short.contains(&t.table.as_str())).collect();
            return throttled_answer(&write, &throttled);
        }
        let forwarded = self.forward(parts, body).await;
        let (status, headers, answer) = match forwarded {
            Ok(a) => a,
            Err(e) => {
                self.refund(&per_table);
                return self.failed(e);
            }
        };
        let charged = match answered(status, &answer) {
            Answered::Refused => {
                self.refund(&per_table);
                None
            }
            Answered::ConditionFailed => Some(per_table.clone()),
            Answered::Written => {
                // An update's item is known only once written: charge the larger of the two.
                let mut actual: BTreeMap<&str, u64> = BTreeMap::new();
                for (t, (wcu, before)) in write.touches.iter().zip(&costs) {
                    let after = match (&t.key, &t.put) {
                        (Some(k), None) => self.item_size(&t.table, k).await.unwrap_or(0),
                        _ => 0,
                    };
                    let units = (*wcu).max(write_units((*before).max(after), write.transactional));
                    *actual.entry(t.table.as_str()).or_default() += units;
                }
                let mut buckets = lock(&self.buckets);
                for (table, wcu) in &actual {
                    if let Some(b) = buckets.get_mut(*table) {
                        b.adjust(per_table[table] as f64 - *wcu as f64, Instant::now());
                    }
                }
                Some(actual)
            }
        };
        if let Some(charged) = charged {
            let at = arrived - self.started;
            let mut ledger = lock(&self.ledger);
            for (table, wcu) in charged {
                if lock(&self.buckets).contains_key(table) {
                    ledger.push(Charge {
                        at,
                        table: table.to_owned(),
                        operation: write.operation,
                        wcu,
                        throttled: false,
                    });
                }
            }
        }
        rebuild(status, headers, answer)
    }

    fn refund(&self, per_table: &BTreeMap<&str, u64>) {
        let mut buckets = lock(&self.buckets);
        for (table, wcu) in per_table {
            if let Some(b) = buckets.get_mut(*table) {
                b.adjust(*wcu as f64, Instant::now());
            }
        }
    }

    /// A put's key: the item's key attributes (from DescribeTable, once per table).
    async fn key_of(&self, table: &str, item: &Value) -> Result<Option<Value>, String> {
        let known = lock(&self.keys).get(table).cloned();
        let names = match known {
            Some(n) => n,
            None => {
                let answer = self.call("DescribeTable", serde_json::json!({"TableName": table})).await?;
                let names: Vec<String> = answer["Table"]["KeySchema"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                    .collect();
                lock(&self.keys).insert(table.to_owned(), names.clone());
                names
            }
        };
        let key: serde_json::Map<String, Value> =
            names.iter().filter_map(|n| item.get(n).map(|v| (n.clone(), v.clone()))).collect();
        Ok((key.len() == names.len() && !names.is_empty()).then_some(Value::Object(key)))
    }

    /// The size of the item at `key` now (0 when there is none), read consistently.
    async fn item_size(&self, table: &str, key: &Value) -> Result<usize, String> {
        let answer =
            self.call("GetItem", serde_json::json!({"TableName": table, "Key": key, "ConsistentRead": true})).await?;
        Ok(answer.get("Item").map_or(0, item_size))
    }

    /// A DynamoDB call of the proxy's own to the endpoint.
    async fn call(&self, operation: &str, body: Value) -> Result<Value, String> {
        let req = Request::post("/")
            .header("host", self.upstream.to_string())
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            // moto reads the region from the signature's scope; any credentials do.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let (status, _, answer) = self.send(req).await?;
        if !status.is_success() {
            return Err(format!("{operation} answered {status}: {}", String::from_utf8_lossy(&answer)));
        }
        serde_json::from_slice(&answer).map_err(|e| format!("{operation} answered something that is not JSON: {e}"))
    }

    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        self.send(Request::from_parts(parts, Full::new(body))).await
    }

    async fn send(&self, req: Request<Body>) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(self.upstream)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.upstream))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk to {}: {e}", self.upstream))?;
        let driver = tokio::spawn(connection);
        let answer = sender.send_request(req).await.map_err(|e| format!("{} did not answer: {e}", self.upstream))?;
        let (parts, body) = answer.into_parts();
        let body = body.collect().await.map_err(|e| format!("cannot read the answer: {e}"))?.to_bytes();
        driver.abort();
        Ok((parts.status, parts.headers, body))
    }
}

fn rebuild(status: StatusCode, headers: hyper::HeaderMap, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    for (k, v) in &headers {
        // The body is sent whole: hyper sets its own length.
        if k != hyper::header::TRANSFER_ENCODING && k != hyper::header::CONTENT_LENGTH {
            r.headers_mut().append(k, v.clone());
        }
    }
    r
}

/// The most WCU written (not throttled) within any `window` of the ledger (in time order).
pub fn most_in_window(ledger: &[Charge], window: Duration) -> u64 {
    let written: Vec<&Charge> = ledger.iter().filter(|c| !c.throttled).collect();
    let mut best = 0;
    let mut sum = 0;
    let mut start = 0;
    for c in &written {
        sum += c.wcu;
        while written[start].at + window <= c.at {
            sum -= written[start].wcu;
            start += 1;
        }
        best = best.max(sum);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules_on_the_wire_format() {
        assert_eq!(value_size(&json!({"S": "Aggregate"})), 9);
        assert_eq!(value_size(&json!({"S": "\u{e9}"})), 2, "UTF-8 bytes");
        assert_eq!(value_size(&json!({"N": "1"})), 2);
        assert_eq!(value_size(&json!({"N": "123"})), 3);
        assert_eq!(value_size(&json!({"N": "-0012300"})), 3, "leading and trailing zeros are not significant");
        assert_eq!(value_size(&json!({"N": "1.5"})), 2);
        assert_eq!(value_size(&json!({"B": "AAEC"})), 3);
        assert_eq!(value_size(&json!({"B": "AA=="})), 1);
        assert_eq!(value_size(&json!({"BOOL": true})), 1);
        assert_eq!(value_size(&json!({"NULL": true})), 1);
        assert_eq!(value_size(&json!({"SS": ["ab", "c"]})), 3);
        assert_eq!(value_size(&json!({"L": [{"S": "ab"}, {"N": "1"}]})), 3 + (1 + 2) + (1 + 2));
        assert_eq!(value_size(&json!({"M": {"k": {"S": "v"}}})), 3 + 1 + 1 + 1);
        let item = json!({"PK": {"S": "Aggregate"}, "SK": {"S": "2024-05-01#Latte"}, "val": {"N": "12"}});
        assert_eq!(item_size(&item), 2 + 9 + 2 + 16 + 3 + 2);
    }

    #[test]
    fn units_are_per_started_kb_and_double_in_a_transaction() {
        assert_eq!(write_units(0, false), 1, "at least one");
        assert_eq!(write_units(1024, false), 1);
        assert_eq!(write_units(1025, false), 2);
        assert_eq!(write_units(1024, true), 2);
        assert_eq!(write_units(3000, true), 6);
    }

    #[test]
    fn writes_are_read_from_every_write_operation_and_nothing_else() {
        let put =
            json!({"TableName": "t", "Item": {"PK": {"S": "a"}}, "ConditionExpression": "attribute_not_exists(PK)"});
        let w = parse_write("PutItem", &put).unwrap();
        assert_eq!((w.operation, w.transactional, w.touches.len()), ("PutItem", false, 1));
        assert_eq!(w.touches[0].put, Some(json!({"PK": {"S": "a"}})));
        let tx = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"PK": {"S": "a"}}}},
            {"Update": {"TableName": "t", "Key": {"PK": {"S": "b"}}, "UpdateExpression": "ADD #v :n"}},
            {"ConditionCheck": {"TableName": "u", "Key": {"PK": {"S": "c"}}}},
            {"Delete": {"TableName": "t", "Key": {"PK": {"S": "d"}}}},
        ]});
        let w = parse_write("TransactWriteItems", &tx).unwrap();
        assert!(w.transactional);
        let tables: Vec<&str> = w.touches.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(tables, ["t", "t", "u", "t"]);
        let batch = json!({"RequestItems": {"t": [{"PutRequest": {"Item": {"PK": {"S": "a"}}}}, {"DeleteRequest": {"Key": {"PK": {"S": "b"}}}}]}});
        assert_eq!(parse_write("BatchWriteItem", &batch).unwrap().touches.len(), 2);
        for read in ["GetItem", "Query", "Scan", "DescribeTable", "TransactGetItems"] {
            assert_eq!(parse_write(read, &put), None, "{read}");
        }
    }

    #[test]
    fn a_failed_condition_consumes_and_other_refusals_do_not() {
        let bad = StatusCode::BAD_REQUEST;
        let body = |v: Value| v.to_string().into_bytes();
        assert_eq!(answered(StatusCode::OK, b"{}"), Answered::Written);
        assert_eq!(
            answered(bad, &body(json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}))),
            Answered::ConditionFailed
        );
        let cancelled = |code: &str| {
            body(json!({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "CancellationReasons": [{"Code": "None"}, {"Code": code}]}))
        };
        assert_eq!(answered(bad, &cancelled("ConditionalCheckFailed")), Answered::ConditionFailed);
        assert_eq!(answered(bad, &cancelled("ValidationError")), Answered::Refused);
        assert_eq!(answered(bad, &body(json!({"__type": "ValidationException"}))), Answered::Refused);
        assert_eq!(answered(bad, b"not json"), Answered::Refused);
    }

    #[test]
    fn the_bucket_refills_at_the_provisioned_rate_and_keeps_300_seconds_of_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, 1.0, Burst::Empty, t0);
        assert!(!b.take(1, t0), "empty at the start");
        assert!(b.take(5, t0 + Duration::from_secs(1)));
        assert!(!b.take(1, t0 + Duration::from_secs(1)));
        // Ten minutes idle keep only five minutes' worth.
        assert!(b.take(1500, t0 + Duration::from_secs(601)));
        assert!(!b.take(1, t0 + Duration::from_secs(601)));
        let mut full = Bucket::new(5, 1.0, Burst::Full, t0);
        assert!(full.take(1500, t0) && !full.take(1, t0));
        // A scaled clock: the same units, 20 times as fast.
        let mut fast = Bucket::new(5, 0.05, Burst::Empty, t0);
        assert!(fast.take(100, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_most_in_a_window_counts_only_what_was_written() {
        let c = |secs: u64, wcu: u64, throttled: bool| Charge {
            at: Duration::from_secs(secs),
            table: "t".into(),
            operation: "TransactWriteItems",
            wcu,
            throttled,
        };
        let ledger = [c(0, 28, false), c(30, 28, false), c(59, 28, false), c(60, 28, false), c(61, 999, true)];
        assert_eq!(most_in_window(&ledger, Duration::from_secs(60)), 84);
        assert_eq!(most_in_window(&ledger, Duration::from_secs(61)), 112);
        assert_eq!(most_in_window(&[], Duration::from_secs(60)), 0);
    }
}
