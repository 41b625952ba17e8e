//! EventsLoadTest's logic, free of the Lambda runtime: turn the input into order events and put
//! them on the bus in PutEvents calls of 10, retrying the entries that fail for a reason worth
//! retrying, and stopping before the invocation's deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use order_events::{BadDrink, DetailType, Drink, SOURCE};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// EventBridge's limit on the entries of one PutEvents call.
pub const ENTRIES_PER_CALL: usize = 10;

/// The longest one PutEvents call may take: the client's operation timeout (see [`client`]).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Time kept after the last call for returning the report.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Entry error codes worth retrying, as PutEvents documents them; any other code (for example
/// `MalformedDetail`, `AccessDeniedException`) fails its entry at once.
pub const RETRYABLE_ENTRY_CODES: [&str; 3] = ["ThrottlingException", "InternalFailure", UNREADABLE];

/// The invocation's input; every field is optional (`{}` runs the workshop's test).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// How many events; default 500, at most 10000.
    pub count: Option<u32>,
    /// Drinks picked from at random; default the workshop's Latte, Cappuccino and Espresso.
    pub drinks: Option<Vec<String>>,
    /// Seed of the drink choice, so a run can be repeated; default 42.
    pub seed: Option<u64>,
    /// Default `OrderManager.WaitingCompletion`.
    #[serde(rename = "detailType")]
    pub detail_type: Option<DetailType>,
    /// Prefix of the order IDs (`<runId>-<n>`); default the invocation's request ID, so each run
    /// sends new orders and Lambda's retry of one asynchronous invocation sends the same ones.
    #[serde(rename = "runId")]
    pub run_id: Option<String>,
    /// Order IDs `1000`, `1001`, ... as the workshop's original load test sends them: the same
    /// on every run, so a second run within the dedupe window counts nothing (every order is
    /// a duplicate of the first run's). Default false.
    #[serde(rename = "workshopOrderIds")]
    pub workshop_order_ids: Option<bool>,
}

pub use order_events::capacity::load_test::{DEFAULT_COUNT, DEFAULT_DRINKS};
pub const MAX_COUNT: u32 = 10_000;
pub const DEFAULT_SEED: u64 = 42;
/// Longest run ID: order IDs stay far within the handler's limit.
pub const MAX_RUN_ID_CHARS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("count = {0} is invalid: must be between 1 and {MAX_COUNT}")]
    Count(u32),
    #[error("drinks is empty: name at least one drink")]
    NoDrinks,
    #[error("drinks holds an invalid name: {0}")]
    Drink(#[from] BadDrink),
    #[error("runId {0:?} is invalid: 1 to {MAX_RUN_ID_CHARS} of A-Z, a-z, 0-9, - and _")]
    RunId(String),
}

/// One event to put.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub drink: String,
    pub detail_type: DetailType,
    /// The detail JSON, in the workshop load test's shape.
    pub detail: String,
}

/// The events `input` asks for, the same for the same input and run ID. `default_run_id`
/// (the invocation's request ID) is used when the input names none.
pub fn plan(input: &Input, default_run_id: &str) -> Result<Vec<Order>, InputError> {
    let count = input.count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(InputError::Count(count));
    }
    let drinks: Vec<String> = match &input.drinks {
        Some(d) => d.iter().map(|d| Drink::parse(d).map(|d| d.as_str().to_owned())).collect::<Result<_, _>>()?,
        None => DEFAULT_DRINKS.iter().map(|d| (*d).to_owned()).collect(),
    };
    if drinks.is_empty() {
        return Err(InputError::NoDrinks);
    }
    let run_id = input.run_id.as_deref().unwrap_or(default_run_id);
    let valid_run_id = (1..=MAX_RUN_ID_CHARS).contains(&run_id.chars().count())
        && run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_run_id {
        return Err(InputError::RunId(run_id.to_owned()));
    }
    let detail_type = input.detail_type.unwrap_or(DetailType::WaitingCompletion);
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed.unwrap_or(DEFAULT_SEED));
    Ok((0..count)
        .map(|i| {
            let drink = drinks[rng.random_range(0..drinks.len())].clone();
            let order_id = if input.workshop_order_ids == Some(true) {
                (1000 + i).to_string()
            } else {
                format!("{run_id}-{}", 1000 + i)
            };
            let user_id = (1000 + i).to_string();
            let detail = serde_json::json!({
                "Message": "Serverlesspresso load test",
                "orderId": order_id,
                "ORDERSTATE": "Completed",
                "userId": user_id,
                "drinkOrder": {"userId": user_id, "drink": drink},
            })
            .to_string();
            Order { drink, detail_type, detail }
        })
        .collect())
}

/// The outcome of one PutEvents call: per entry, `None` when put, or its error code.
pub type EntryResults = Vec<Option<String>>;

/// A PutEvents call that failed as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct PutError {
    pub message: String,
    /// Throttling, internal errors, timeouts: the same call may succeed later.
    pub retryable: bool,
    /// No answer came (a timeout, an unreadable response): EventBridge may have put the
    /// entries. Their order IDs make a count exact either way; the report calls them
    /// uncertain, never failed.
    pub outcome_unknown: bool,
}

/// Reads PutEvents' answer entry by entry (its API reference): an entry was put when it has an
/// `EventId` and no `ErrorCode`, and refused with its `ErrorCode` otherwise; an entry with
/// neither, or an answer whose `FailedEntryCount` disagrees with its entries, cannot be read
/// and is refused as `Unreadable` (retried: its order ID keeps a count exact).
pub fn entry_results(out: &aws_sdk_eventbridge::operation::put_events::PutEventsOutput) -> EntryResults {
    let refused = out.entries().iter().filter(|e| e.error_code().is_some() || e.event_id().is_none()).count();
    let consistent = usize::try_from(out.failed_entry_count()).is_ok_and(|n| n == refused);
    out.entries()
        .iter()
        .map(|e| match (e.event_id(), e.error_code()) {
            (_, Some(code)) => Some(code.to_owned()),
            (Some(_), None) if consistent => None,
            _ => Some(UNREADABLE.to_owned()),
        })
        .collect()
}

/// The error code given to an entry whose result cannot be read.
pub const UNREADABLE: &str = "Unreadable";

/// Where events go.
pub trait Bus {
    /// Puts up to ten events.
    fn put(&self, orders: &[Order]) -> impl Future<Output = Result<EntryResults, PutError>> + Send;
}

/// What was sent, for comparing with the table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub sent: u32,
    /// Entries refused for good, or still failing after the retries.
    pub failed: u32,
    /// Entries whose last call got no answer (a timeout) when the run gave up on them:
    /// EventBridge may or may not have put them.
    #[serde(default)]
    pub uncertain: u32,
    /// Entries never tried: the run stopped first (deadline, or an error no retry fixes).
    pub unsent: u32,
    #[serde(rename = "perDrink")]
    pub per_drink: BTreeMap<String, u32>,
    #[serde(rename = "detailType")]
    pub detail_type: Option<DetailType>,
    #[serde(rename = "putEventsCalls")]
    pub put_events_calls: u32,
    /// Entries retried after failing (throttling, internal errors).
    pub retries: u32,
    #[serde(rename = "lastError", skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the run stopped before sending everything.
    #[serde(rename = "stoppedEarly", skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
}

/// Retries of failed entries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(100) }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Puts every order, ten per call. Entries that fail for a retryable reason are retried with
/// backoff; others fail at once. A call is only made while it can end before `deadline`; a
/// whole-call error no retry fixes (access denied, no such bus) stops the run. Either way the
/// report says what was sent.
pub async fn send<B: Bus>(bus: &B, orders: Vec<Order>, retry: RetryPolicy, deadline: Instant) -> Report {
    let mut report = Report { detail_type: orders.first().map(|o| o.detail_type), ..Default::default() };
    let total = orders.len();
    let mut done = 0;
    'calls: for (n, call) in orders.chunks(ENTRIES_PER_CALL).enumerate() {
        let mut pending: Vec<Order> = call.to_vec();
        let mut attempt = 0;
        // Whether the last call for `pending` went unanswered.
        let mut unknown = false;
        while !pending.is_empty() {
            let delay =
                if attempt == 0 { Duration::ZERO } else { retry.base_delay.saturating_mul(1 << (attempt - 1).min(10)) };
            if Instant::now() + delay + CALL_TIMEOUT + ANSWER_MARGIN > deadline {
                if unknown {
                    report.uncertain += count(pending.len());
                    done += pending.len();
                }
                report.unsent += count(total - done);
                report.stopped_early = Some("the invocation's time ran out".to_owned());
                break 'calls;
            }
            tokio::time::sleep(delay).await;
            report.put_events_calls += 1;
            let retry_these = match bus.put(&pending).await {
                Ok(results) if results.len() == pending.len() => {
                    unknown = false;
                    let mut again = Vec::new();
                    for (order, result) in pending.into_iter().zip(results) {
                        match result {
                            None => {
                                report.sent += 1;
                                done += 1;
                                *report.per_drink.entry(order.drink).or_insert(0) += 1;
                            }
                            Some(code) if RETRYABLE_ENTRY_CODES.contains(&code.as_str()) => {
                                unknown |= code == UNREADABLE;
                                report.last_error = Some(code);
                                again.push(order);
                            }
                            Some(code) => {
                                tracing::warn!(call = n, code = %code, "entry refused");
                                report.failed += 1;
                                done += 1;
                                report.last_error = Some(code);
                            }
                        }
                    }
                    again
                }
                Ok(results) => {
                    // Which entries were put cannot be told: as if no answer came.
                    unknown = true;
                    report.last_error =
                        Some(format!("PutEvents answered {} results for {} entries", results.len(), pending.len()));
                    pending
                }
                Err(e) if e.retryable => {
                    unknown = e.outcome_unknown;
                    report.last_error = Some(e.message);
                    pending
                }
                Err(e) => {
                    tracing::warn!(call = n, error = %e.message, "PutEvents refused; stopping");
                    report.failed += count(pending.len());
                    done += pending.len();
                    report.unsent += count(total - done);
                    report.stopped_early = Some(format!("PutEvents refused the call: {}", e.message));
                    report.last_error = Some(e.message);
                    break 'calls;
                }
            };
            attempt += 1;
            if !retry_these.is_empty() && attempt >= retry.max_attempts {
                tracing::warn!(call = n, entries = retry_these.len(), error = ?report.last_error, "giving up on entries");
                if unknown {
                    report.uncertain += count(retry_these.len());
                } else {
                    report.failed += count(retry_these.len());
                }
                done += retry_these.len();
                break;
            }
            report.retries += count(retry_these.len());
            pending = retry_these;
        }
        if (n + 1) % 10 == 0 {
            tracing::info!(sent = report.sent, failed = report.failed, "progress");
        }
    }
    report
}

/// The EventBridge client as EventsLoadTest uses it: no retries of its own (entries are retried
/// one by one above, with the deadline in view), every call bounded by [`CALL_TIMEOUT`].
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    let conf = aws_sdk_eventbridge::config::Builder::from(config)
        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_eventbridge::config::timeout::TimeoutConfig::builder()
                .operation_timeout(CALL_TIMEOUT)
                .operation_attempt_timeout(CALL_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_eventbridge::Client::from_conf(conf)
}

/// Reads a failed PutEvents call: worth retrying or not.
pub fn put_error(
    error: aws_sdk_eventbridge::error::SdkError<aws_sdk_eventbridge::operation::put_events::PutEventsError>,
) -> PutError {
    use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
    let message = format!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(&error));
    let outcome_unknown = match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(f) => f.is_timeout(),
        _ => false,
    };
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => {
            matches!(
                e.err().code(),
                Some("ThrottlingException" | "InternalException" | "InternalFailure" | "ServiceUnavailable")
            ) || e.raw().status().is_server_error()
        }
        _ => false,
    };
    PutError { message, retryable, outcome_unknown }
}

/// The real bus.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        EventBridgeBus { client, bus_name: bus_name.into() }
    }
}

impl Bus for EventBridgeBus {
    async fn put(&self, orders: &[Order]) -> Result<EntryResults, PutError> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entries = orders
            .iter()
            .map(|o| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(SOURCE)
                    .detail_type(o.detail_type.as_str())
                    .detail(&o.detail)
                    .time(aws_sdk_eventbridge::primitives::DateTime::from(std::time::SystemTime::now()))
                    .build()
            })
            .collect();
        let out = self.client.put_events().set_entries(Some(entries)).send().await.map_err(put_error)?;
        Ok(entry_results(&out))
    }
}

/// Runs the whole load test: plan, then send.
pub async fn run<B: Bus>(
    bus: &B,
    input: &Input,
    default_run_id: &str,
    retry: RetryPolicy,
    deadline: Instant,
) -> Result<Report, InputError> {
    let orders = plan(input, default_run_id)?;
    Ok(send(bus, orders, retry, deadline).await)
}

#[cfg(test)]
mod tests;
