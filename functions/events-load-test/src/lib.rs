//! EventsLoadTest's logic, free of the Lambda runtime: turn the input into order events and put
//! them on the bus in PutEvents calls of 10, retrying the entries that fail.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use order_events::{DetailType, SOURCE};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// EventBridge's limit on the entries of one PutEvents call.
pub const ENTRIES_PER_CALL: usize = 10;

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
}

pub const DEFAULT_COUNT: u32 = 500;
pub const MAX_COUNT: u32 = 10_000;
pub const DEFAULT_DRINKS: [&str; 3] = ["Latte", "Cappuccino", "Espresso"];
pub const DEFAULT_SEED: u64 = 42;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("count = {0} is invalid: must be between 1 and {MAX_COUNT}")]
    Count(u32),
    #[error("drinks is empty: name at least one drink")]
    NoDrinks,
    #[error("drink {0:?} is invalid: 1 to 100 characters without `#`")]
    Drink(String),
}

/// One event to put.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub drink: String,
    pub detail_type: DetailType,
    /// The detail JSON, in the workshop load test's shape.
    pub detail: String,
}

/// The events `input` asks for, the same for the same input.
pub fn plan(input: &Input) -> Result<Vec<Order>, InputError> {
    let count = input.count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(InputError::Count(count));
    }
    let drinks: Vec<String> = match &input.drinks {
        Some(d) => d.clone(),
        None => DEFAULT_DRINKS.iter().map(|d| (*d).to_owned()).collect(),
    };
    if drinks.is_empty() {
        return Err(InputError::NoDrinks);
    }
    if let Some(bad) = drinks.iter().find(|d| d.is_empty() || d.chars().count() > 100 || d.contains('#')) {
        return Err(InputError::Drink(bad.clone()));
    }
    let detail_type = input.detail_type.unwrap_or(DetailType::WaitingCompletion);
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed.unwrap_or(DEFAULT_SEED));
    Ok((0..count)
        .map(|i| {
            let drink = drinks[rng.random_range(0..drinks.len())].clone();
            let id = (1000 + i).to_string();
            let detail = serde_json::json!({
                "Message": "Serverlesspresso load test",
                "orderId": id,
                "ORDERSTATE": "Completed",
                "userId": id,
                "drinkOrder": {"userId": id, "drink": drink},
            })
            .to_string();
            Order { drink, detail_type, detail }
        })
        .collect())
}

/// The outcome of one PutEvents call: per entry, `None` when put, or its error code.
pub type EntryResults = Vec<Option<String>>;

/// Where events go.
pub trait Bus {
    /// Puts up to ten events; a whole-call error is `Err`.
    fn put(&self, orders: &[Order]) -> impl Future<Output = Result<EntryResults, String>> + Send;
}

/// What was sent, for comparing with the table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub sent: u32,
    pub failed: u32,
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

/// Puts every order, ten per call; entries that fail are retried with backoff.
pub async fn send<B: Bus>(bus: &B, orders: Vec<Order>, retry: RetryPolicy) -> Report {
    let mut report = Report { detail_type: orders.first().map(|o| o.detail_type), ..Default::default() };
    for (n, call) in orders.chunks(ENTRIES_PER_CALL).enumerate() {
        let mut pending: Vec<Order> = call.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            report.put_events_calls += 1;
            let retry_these = match bus.put(&pending).await {
                Ok(results) if results.len() == pending.len() => {
                    let mut again = Vec::new();
                    for (order, result) in pending.into_iter().zip(results) {
                        match result {
                            None => {
                                report.sent += 1;
                                *report.per_drink.entry(order.drink).or_insert(0) += 1;
                            }
                            Some(code) => {
                                report.last_error = Some(code);
                                again.push(order);
                            }
                        }
                    }
                    again
                }
                Ok(results) => {
                    report.last_error =
                        Some(format!("PutEvents answered {} results for {} entries", results.len(), pending.len()));
                    pending
                }
                Err(e) => {
                    report.last_error = Some(e);
                    pending
                }
            };
            attempt += 1;
            if !retry_these.is_empty() && attempt >= retry.max_attempts {
                tracing::warn!(call = n, entries = retry_these.len(), error = ?report.last_error, "giving up on entries");
                report.failed += u32::try_from(retry_these.len()).unwrap_or(u32::MAX);
                break;
            }
            if !retry_these.is_empty() {
                report.retries += u32::try_from(retry_these.len()).unwrap_or(u32::MAX);
                tokio::time::sleep(retry.base_delay.saturating_mul(1 << (attempt - 1).min(10))).await;
            }
            pending = retry_these;
        }
        if (n + 1) % 10 == 0 {
            tracing::info!(sent = report.sent, failed = report.failed, "progress");
        }
    }
    report
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
    async fn put(&self, orders: &[Order]) -> Result<EntryResults, String> {
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
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(&e)))?;
        Ok(out.entries().iter().map(|e| e.error_code().map(str::to_owned)).collect())
    }
}

/// Runs the whole load test: plan, then send.
pub async fn run<B: Bus>(bus: &B, input: &Input, retry: RetryPolicy) -> Result<Report, InputError> {
    let orders = plan(input)?;
    Ok(send(bus, orders, retry).await)
}

#[cfg(test)]
mod tests;
