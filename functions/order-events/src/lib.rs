//! The order events the metrics count: the EventBridge envelope, the details of the three
//! detail-types (both the workshop load test's shape and the real app's), the metric keys they
//! increment, and a JSON Schema of each detail.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The source of every order event.
pub const SOURCE: &str = "awsserverlessda.serverlesspresso";

/// The drinks on the Serverlesspresso menu.
pub const MENU: [&str; 6] = ["Espresso", "Cappuccino", "Latte", "Flat White", "Americano", "Coffee of the day"];

/// The partition key value of every counter item (the workshop's layout).
pub const AGGREGATE_PK: &str = "Aggregate";

/// The detail-types counted, and what each one counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum DetailType {
    /// A barista starts making the drink: one sale, per day and per drink.
    #[serde(rename = "OrderManager.WaitingCompletion")]
    WaitingCompletion,
    #[serde(rename = "OrderManager.OrderCompleted")]
    OrderCompleted,
    #[serde(rename = "OrderManager.OrderCancelled")]
    OrderCancelled,
}

impl DetailType {
    pub const ALL: [DetailType; 3] =
        [DetailType::WaitingCompletion, DetailType::OrderCompleted, DetailType::OrderCancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::WaitingCompletion => "OrderManager.WaitingCompletion",
            DetailType::OrderCompleted => "OrderManager.OrderCompleted",
            DetailType::OrderCancelled => "OrderManager.OrderCancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An EventBridge event as SQS delivers it (the message body is the whole event).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Envelope {
    /// Unique per event; the same on every redelivery of it.
    pub id: String,
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: serde_json::Value,
}

/// An ID that the apps send as a string ("1000") or a number (1000).
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(serde_json::Number),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    }))
}

/// An ID, sent as a string ("1000") or a number (1000).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used.
enum IdSchema {
    Text(String),
    Number(f64),
}

/// The drink of an order.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct DrinkOrder {
    /// One of the menu's drinks, e.g. "Latte".
    pub drink: String,
    #[serde(
        rename = "userId",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifiers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// The detail of `OrderManager.WaitingCompletion`: the drink is required, it is what is counted.
/// Fields other than these are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct WaitingCompletionDetail {
    #[serde(
        rename = "orderId",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<IdSchema>")]
    pub order_id: Option<String>,
    #[serde(rename = "drinkOrder")]
    pub drink_order: DrinkOrder,
    #[serde(
        rename = "userId",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
    #[serde(rename = "Message", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The detail of `OrderManager.OrderCompleted` and `OrderManager.OrderCancelled`: only the day
/// is counted, so every field is optional.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct OrderStateDetail {
    #[serde(
        rename = "orderId",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<IdSchema>")]
    pub order_id: Option<String>,
    #[serde(rename = "drinkOrder", default, skip_serializing_if = "Option::is_none")]
    pub drink_order: Option<DrinkOrder>,
    #[serde(
        rename = "userId",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
}

/// One order event, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderEvent {
    pub id: String,
    /// The UTC day of the event's `time`: when the order happened, not when it was counted.
    pub day: NaiveDate,
    pub kind: OrderKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrderKind {
    WaitingCompletion { drink: String },
    Completed,
    Cancelled,
}

/// Why a message is not an order event this service counts.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadEvent {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error("unexpected source `{0}`")]
    UnknownSource(String),
    #[error("unknown detail-type `{0}`")]
    UnknownDetailType(String),
    #[error("{detail_type} detail is invalid: {reason}")]
    BadDetail { detail_type: &'static str, reason: String },
    #[error("no drink in the {0} detail")]
    NoDrink(&'static str),
    #[error("drink name {0:?} is invalid: 1 to 100 characters without `#`")]
    BadDrink(String),
}

impl OrderEvent {
    /// Parses an SQS message body holding an EventBridge event.
    pub fn from_body(body: &str) -> Result<Self, BadEvent> {
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| BadEvent::NotJson(e.to_string()))?;
        let envelope: Envelope = serde_json::from_value(value).map_err(|e| BadEvent::NotAnEvent(e.to_string()))?;
        Self::from_envelope(envelope)
    }

    pub fn from_envelope(e: Envelope) -> Result<Self, BadEvent> {
        if e.source != SOURCE {
            return Err(BadEvent::UnknownSource(e.source));
        }
        let detail_type = DetailType::parse(&e.detail_type).ok_or(BadEvent::UnknownDetailType(e.detail_type))?;
        let name = detail_type.as_str();
        let bad = |err: serde_json::Error| BadEvent::BadDetail { detail_type: name, reason: err.to_string() };
        let kind = match detail_type {
            DetailType::WaitingCompletion => {
                let has_drink = e.detail.get("drinkOrder").and_then(|d| d.get("drink")).is_some_and(|d| !d.is_null());
                if !has_drink {
                    return Err(BadEvent::NoDrink(name));
                }
                let detail: WaitingCompletionDetail = serde_json::from_value(e.detail).map_err(bad)?;
                let drink = detail.drink_order.drink;
                if drink.is_empty() || drink.chars().count() > 100 || drink.contains('#') {
                    return Err(BadEvent::BadDrink(drink));
                }
                OrderKind::WaitingCompletion { drink }
            }
            DetailType::OrderCompleted | DetailType::OrderCancelled => {
                let _: OrderStateDetail = serde_json::from_value(e.detail).map_err(bad)?;
                if detail_type == DetailType::OrderCompleted {
                    OrderKind::Completed
                } else {
                    OrderKind::Cancelled
                }
            }
        };
        Ok(OrderEvent { id: e.id, day: e.time.date_naive(), kind })
    }

    /// The counters this event increments by one.
    pub fn metric_keys(&self) -> Vec<MetricKey> {
        match &self.kind {
            OrderKind::WaitingCompletion { drink } => {
                vec![
                    MetricKey::new(self.day, Metric::TotalSales),
                    MetricKey::new(self.day, Metric::Drink(drink.clone())),
                ]
            }
            OrderKind::Completed => vec![MetricKey::new(self.day, Metric::Completed)],
            OrderKind::Cancelled => vec![MetricKey::new(self.day, Metric::Cancelled)],
        }
    }
}

/// What a counter counts on its day.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    TotalSales,
    /// Sales of one drink, by its raw name.
    Drink(String),
    Completed,
    Cancelled,
}

/// One counter item: PK `Aggregate`, SK `YYYY-MM-DD#<metric>`, counter attribute `val`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    pub day: NaiveDate,
    pub metric: Metric,
}

impl MetricKey {
    pub fn new(day: NaiveDate, metric: Metric) -> Self {
        MetricKey { day, metric }
    }

    /// The sort key, e.g. `2024-05-01#TotalSales` or `2024-05-01#Flat White`.
    pub fn sort_key(&self) -> String {
        let suffix = match &self.metric {
            Metric::TotalSales => "TotalSales",
            Metric::Drink(d) => d,
            Metric::Completed => "Completed",
            Metric::Cancelled => "Cancelled",
        };
        format!("{}#{suffix}", self.day.format("%Y-%m-%d"))
    }

    /// Reads a sort key back; `None` when it is not `YYYY-MM-DD#<metric>`.
    pub fn parse_sort_key(sk: &str) -> Option<Self> {
        let (day, rest) = sk.split_once('#')?;
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let metric = match rest {
            "TotalSales" => Metric::TotalSales,
            "Completed" => Metric::Completed,
            "Cancelled" => Metric::Cancelled,
            "" => return None,
            drink => Metric::Drink(drink.to_owned()),
        };
        Some(MetricKey { day, metric })
    }
}

/// The JSON Schema of each detail-type's detail, as `(file name, pretty JSON)`.
pub fn detail_schemas() -> Vec<(String, String)> {
    let schema = |d: DetailType| match d {
        DetailType::WaitingCompletion => schemars::schema_for!(WaitingCompletionDetail),
        DetailType::OrderCompleted | DetailType::OrderCancelled => schemars::schema_for!(OrderStateDetail),
    };
    DetailType::ALL
        .into_iter()
        .map(|d| {
            let mut s = schema(d);
            s.insert("title".to_owned(), format!("{} detail", d.as_str()).into());
            let mut json = serde_json::to_string_pretty(&s).unwrap_or_default();
            json.push('\n');
            (format!("{}.schema.json", d.as_str()), json)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(detail_type: &str, time: &str, detail: serde_json::Value) -> String {
        serde_json::json!({
            "version": "0", "id": "e1", "source": SOURCE, "detail-type": detail_type,
            "account": "123456789012", "time": time, "region": "us-east-1", "resources": [], "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn day_comes_from_the_event_time_in_utc() {
        let b = body("OrderManager.OrderCompleted", "2024-05-01T23:59:59+00:00", serde_json::json!({}));
        assert_eq!(OrderEvent::from_body(&b).unwrap().day.to_string(), "2024-05-01");
        let b = body("OrderManager.OrderCompleted", "2024-05-01T23:30:00-02:00", serde_json::json!({}));
        assert_eq!(OrderEvent::from_body(&b).unwrap().day.to_string(), "2024-05-02");
    }

    #[test]
    fn keys_follow_the_workshop_layout() {
        let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        let e = OrderEvent { id: "x".into(), day, kind: OrderKind::WaitingCompletion { drink: "Flat White".into() } };
        let sks: Vec<String> = e.metric_keys().iter().map(MetricKey::sort_key).collect();
        assert_eq!(sks, ["2024-05-01#TotalSales", "2024-05-01#Flat White"]);
        let c = OrderEvent { id: "y".into(), day, kind: OrderKind::Completed };
        assert_eq!(c.metric_keys()[0].sort_key(), "2024-05-01#Completed");
        let x = OrderEvent { id: "z".into(), day, kind: OrderKind::Cancelled };
        assert_eq!(x.metric_keys()[0].sort_key(), "2024-05-01#Cancelled");
        for k in e.metric_keys().into_iter().chain(c.metric_keys()).chain(x.metric_keys()) {
            assert_eq!(MetricKey::parse_sort_key(&k.sort_key()), Some(k));
        }
        assert_eq!(MetricKey::parse_sort_key("2024-05-01#"), None);
        assert_eq!(MetricKey::parse_sort_key("nope"), None);
        assert_eq!(MetricKey::parse_sort_key("2024-13-01#Latte"), None);
    }

    #[test]
    fn bad_details_are_named() {
        let cases = [
            (
                body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", serde_json::json!({"orderId": "1"})),
                "no drink",
            ),
            (
                body(
                    "OrderManager.WaitingCompletion",
                    "2024-05-01T10:00:00Z",
                    serde_json::json!({"drinkOrder": {"drink": null}}),
                ),
                "no drink",
            ),
            (
                body(
                    "OrderManager.WaitingCompletion",
                    "2024-05-01T10:00:00Z",
                    serde_json::json!({"drinkOrder": {"drink": 5}}),
                ),
                "detail is invalid",
            ),
            (
                body(
                    "OrderManager.WaitingCompletion",
                    "2024-05-01T10:00:00Z",
                    serde_json::json!({"drinkOrder": {"drink": "a#b"}}),
                ),
                "drink name",
            ),
            (
                body(
                    "OrderManager.WaitingCompletion",
                    "2024-05-01T10:00:00Z",
                    serde_json::json!({"drinkOrder": {"drink": ""}}),
                ),
                "drink name",
            ),
            (
                body("OrderManager.OrderCompleted", "2024-05-01T10:00:00Z", serde_json::json!("text")),
                "detail is invalid",
            ),
            (body("OrderManager.Other", "2024-05-01T10:00:00Z", serde_json::json!({})), "unknown detail-type"),
            (body("OrderManager.OrderCompleted", "yesterday", serde_json::json!({})), "not an EventBridge event"),
            ("{\"id\": \"x\"}".to_owned(), "not an EventBridge event"),
            ("not json".to_owned(), "not JSON"),
        ];
        for (b, want) in cases {
            let err = OrderEvent::from_body(&b).unwrap_err().to_string();
            assert!(err.contains(want), "{err} for {b}");
        }
        let other = body("OrderManager.OrderCompleted", "2024-05-01T10:00:00Z", serde_json::json!({}))
            .replace(SOURCE, "someone.else");
        assert_eq!(OrderEvent::from_body(&other).unwrap_err(), BadEvent::UnknownSource("someone.else".into()));
    }

    #[test]
    fn schemas_cover_each_detail_type() {
        let schemas = detail_schemas();
        let names: Vec<&str> = schemas.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "OrderManager.WaitingCompletion.schema.json",
                "OrderManager.OrderCompleted.schema.json",
                "OrderManager.OrderCancelled.schema.json"
            ]
        );
        let waiting: serde_json::Value = serde_json::from_str(&schemas[0].1).unwrap();
        assert_eq!(waiting["title"], "OrderManager.WaitingCompletion detail");
        assert_eq!(waiting["required"], serde_json::json!(["drinkOrder"]));
        let completed: serde_json::Value = serde_json::from_str(&schemas[1].1).unwrap();
        assert!(completed.get("required").is_none());
    }
}
