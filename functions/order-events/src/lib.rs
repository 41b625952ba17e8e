//! The order events the metrics count: the EventBridge envelope, the details of the three
//! detail-types (both the workshop load test's shape and the real app's), the metric keys they
//! increment, and a JSON Schema of each detail.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod capacity;
pub mod window;

/// The source of every order event.
pub const SOURCE: &str = "awsserverlessda.serverlesspresso";

/// The drinks on the Serverlesspresso menu.
pub const MENU: [&str; 6] = ["Espresso", "Cappuccino", "Latte", "Flat White", "Americano", "Coffee of the day"];

/// The metrics table's layout (the workshop's), shared by the stack and the handlers.
/// Partition key attribute (string).
pub const PARTITION_KEY: &str = "PK";
/// Sort key attribute (string).
pub const SORT_KEY: &str = "SK";
/// The partition key value of every counter item.
pub const AGGREGATE_PK: &str = "Aggregate";
/// The counter attribute of a metric item.
pub const COUNTER_ATTRIBUTE: &str = "val";
/// The attribute the table expires items by (the dedupe records').
pub const TTL_ATTRIBUTE: &str = "ttl";
/// The sort key value of every dedupe record.
pub const DEDUPE_SK: &str = "Dedupe";
/// How every dedupe record's partition key starts.
pub const DEDUPE_PK_PREFIX: &str = "Dedupe#";
/// Receives of a metrics-queue message before it moves to the dead-letter queue (the queue's
/// redrive policy): the stack's default, and what the counting tests simulate.
pub const MAX_RECEIVE_COUNT: u32 = 10;
/// Every partition key PublishMetrics writes, as IAM `dynamodb:LeadingKeys` patterns: its
/// grant admits these and nothing else.
pub const WRITTEN_PARTITION_KEYS: [&str; 2] = [AGGREGATE_PK, "Dedupe#*"];

/// What each dedupe record keeps beside its key: which event made the count, and when (the
/// report's `--explain` reads them). Times are RFC 3339 in UTC with milliseconds.
pub mod provenance {
    /// The EventBridge event ID that was counted.
    pub const EVENT_ID: &str = "eventId";
    /// Its detail-type.
    pub const DETAIL_TYPE: &str = "detailType";
    /// The event's `time` (the source's clock): the day it counts on.
    pub const EVENT_TIME: &str = "eventTime";
    /// When the message entered the queue (SQS `SentTimestamp`), when known.
    pub const SENT_AT: &str = "sentAt";
    /// When PublishMetrics received and counted it (its clock).
    pub const COUNTED_AT: &str = "countedAt";
    /// The Lambda request ID of the invocation that counted it: how a retried write that
    /// committed before timing out is recognized as the invocation's own.
    pub const COUNTED_BY: &str = "countedBy";
    /// The drink it counted (`WaitingCompletion` only).
    pub const DRINK: &str = "drink";
    /// The timestamp format of the times above.
    pub const TIME_FORMAT: chrono::SecondsFormat = chrono::SecondsFormat::Millis;
}

/// The environment variables the stack gives the handlers.
pub mod env {
    /// PublishMetrics: the metrics table's name.
    pub const TABLE_NAME: &str = "TABLE_NAME";
    /// EventsLoadTest: the bus to put order events on.
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
    /// PublishMetrics: the write capacity one instance may consume per second (its share of
    /// the table's provisioned WCU), or `unpaced`; see [`crate::capacity::WriteBudget`].
    pub const WRITE_BUDGET: &str = "WRITE_BUDGET_WCU_PER_SECOND";
}

/// The handlers' cargo-lambda binary names: `target/lambda/<name>/bootstrap.zip`.
pub mod assets {
    pub const PUBLISH_METRICS: &str = "publish-metrics";
    pub const EVENTS_LOAD_TEST: &str = "events-load-test";
    pub const ALL: [&str; 2] = [PUBLISH_METRICS, EVENTS_LOAD_TEST];
}

/// What PublishMetrics publishes per invocation as CloudWatch metrics (Embedded Metric Format
/// in its logs), with the function's name as the `FunctionName` dimension.
pub mod emf {
    pub const NAMESPACE: &str = "Serverlesspresso/Metrics";
    pub const DIMENSION: &str = "FunctionName";
    /// Orders counted by the invocation.
    pub const COUNTED: &str = "CountedRecords";
    /// Records whose order was counted before.
    pub const DUPLICATES: &str = "DuplicateRecords";
    /// Records that can never be counted (bad input): they go to the dead-letter queue.
    pub const BAD: &str = "BadRecords";
    /// Records whose write failed (throttling, faults, time out): SQS delivers them again.
    pub const FAILED: &str = "FailedRecords";
    /// Logged with the metrics but not declared as metrics (no custom-metric cost): the
    /// invocation's TransactWriteItems calls, their items, and the write capacity they used.
    pub const TRANSACTIONS: &str = "Transactions";
    pub const TRANSACTION_ITEMS: &str = "TransactionItems";
    pub const WRITE_CAPACITY_UNITS: &str = "WriteCapacityUnits";
    /// Write attempts the table refused for throughput, and the time spent waiting for the
    /// write budget (milliseconds).
    pub const THROTTLED_WRITES: &str = "ThrottledWrites";
    pub const PACING_WAIT_MS: &str = "PacingWaitMs";
}

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

    /// The day's metric an order event of this type counts.
    pub fn counts(self) -> Fixed {
        match self {
            DetailType::WaitingCompletion => Fixed::TotalSales,
            DetailType::OrderCompleted => Fixed::Completed,
            DetailType::OrderCancelled => Fixed::Cancelled,
        }
    }
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
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct DrinkOrder {
    /// One of the menu's drinks, e.g. "Latte".
    pub drink: String,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifiers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// The detail of `OrderManager.WaitingCompletion`: the drink is required, it is what is counted.
/// Fields other than these are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct WaitingCompletionDetail {
    #[serde(rename = "orderId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IdSchema>")]
    pub order_id: Option<String>,
    #[serde(rename = "drinkOrder")]
    pub drink_order: DrinkOrder,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
    #[serde(rename = "Message", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The detail of `OrderManager.OrderCompleted` and `OrderManager.OrderCancelled`: only the day
/// is counted, so every field is optional.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct OrderStateDetail {
    #[serde(rename = "orderId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IdSchema>")]
    pub order_id: Option<String>,
    #[serde(rename = "drinkOrder", default, skip_serializing_if = "Option::is_none")]
    pub drink_order: Option<DrinkOrder>,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IdSchema>")]
    pub user_id: Option<String>,
}

/// Longest event or order ID accepted, in bytes: the dedupe record's partition key must stay
/// far below DynamoDB's 2048-byte limit, and the dedupe record (which holds both the order ID
/// and the event ID) under 1 KB, the size [`capacity::MAX_WCU_PER_ORDER`] plans for.
/// EventBridge's own IDs are 36 characters.
pub const MAX_ID_BYTES: usize = 128;

/// Longest drink name, in characters after normalization.
pub const MAX_DRINK_CHARS: usize = 100;

/// How far ahead of the handler's clock an event's `time` may be before it is refused: a
/// producer's clock may drift, but an order dated tomorrow would be counted on the wrong day.
pub const MAX_CLOCK_SKEW_SECS: i64 = 3600;

/// A drink name as it is counted: trimmed, in Unicode NFC, 1 to 100 characters, no control
/// characters, no `#` (the sort key's separator), no invisible characters (Unicode's
/// default-ignorable code points: zero-width spaces and joiners, bidirectional controls,
/// variation selectors, ...) and no noncharacters; not one of the [reserved
/// names](reserved_names) (a metric's, or a report column's) in any case or as a look-alike;
/// and not a look-alike of a menu drink or of plain ASCII text made of other scripts' letters
/// (`L\u{430}tte` with a Cyrillic `а`): Unicode's confusable skeletons (UTS #39) decide.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Drink(String);

/// The report's day column, and the JSON key of a day's drinks: names no drink may take.
pub const DAY_COLUMN: &str = "day";
pub const DRINKS_KEY: &str = "drinks";

/// Every name a drink may not take, because a metric or an output already uses it: the fixed
/// metrics' names and report columns, the day column and the drinks key.
pub fn reserved_names() -> impl Iterator<Item = &'static str> {
    Fixed::VARIANTS.iter().flat_map(|f| [f.name(), f.column()]).chain([DAY_COLUMN, DRINKS_KEY])
}

/// `name` as look-alikes share it: lower case, then UTS #39's confusable skeleton.
fn skeleton(name: &str) -> String {
    unicode_security::confusable_detection::skeleton(&name.to_lowercase()).collect()
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, Unicode 15): drawn as
/// nothing, so two names that differ only by them look the same.
fn default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF
        | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// Unicode's noncharacters: U+FDD0..U+FDEF and the last two code points of every plane (not
/// valid in XML either, so a chart could not be drawn).
fn noncharacter(c: char) -> bool {
    let c = c as u32;
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Why a drink name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BadDrink {
    #[error("drink name is empty")]
    Empty,
    #[error("drink name {0:?} is longer than {MAX_DRINK_CHARS} characters")]
    TooLong(String),
    #[error("drink name {0:?} holds a control character")]
    Control(String),
    #[error("drink name {0:?} holds `#`, the sort key's separator")]
    Hash(String),
    #[error("drink name {0:?} is reserved: it is (or looks like) {1:?}, a metric's or a report column's name")]
    Reserved(String, &'static str),
    #[error("drink name {0:?} holds U+{1:04X}, which is invisible or not a character")]
    Invisible(String, u32),
    #[error("drink name {0:?} looks like {1:?} but is spelled with other characters")]
    LookAlike(String, String),
}

impl Drink {
    /// Normalizes and checks `raw` (see [`Drink`]).
    pub fn parse(raw: &str) -> Result<Self, BadDrink> {
        use unicode_normalization::UnicodeNormalization;
        let name: String = raw.trim().nfc().collect();
        if name.is_empty() {
            return Err(BadDrink::Empty);
        }
        if name.chars().count() > MAX_DRINK_CHARS {
            return Err(BadDrink::TooLong(name));
        }
        if name.chars().any(char::is_control) {
            return Err(BadDrink::Control(name));
        }
        if name.contains('#') {
            return Err(BadDrink::Hash(name));
        }
        if let Some(c) = name.chars().find(|c| default_ignorable(*c) || noncharacter(*c)) {
            return Err(BadDrink::Invisible(name, c as u32));
        }
        let folded = skeleton(&name);
        if let Some(reserved) = reserved_names().find(|r| skeleton(r) == folded) {
            return Err(BadDrink::Reserved(name, reserved));
        }
        let plain = unicode_security::confusable_detection::skeleton(&name).collect::<String>();
        if let Some(menu) =
            MENU.iter().find(|m| **m != name && unicode_security::confusable_detection::skeleton(m).eq(plain.chars()))
        {
            return Err(BadDrink::LookAlike(name, (*menu).to_owned()));
        }
        use unicode_security::mixed_script::MixedScript;
        if !name.is_single_script() && plain.is_ascii() {
            return Err(BadDrink::LookAlike(name, plain));
        }
        Ok(Drink(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Drink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What makes two messages the same order for counting: the order's ID under its detail-type
/// when the detail has one (a producer may re-publish an order under a new event ID), else the
/// EventBridge event ID (the same on every redelivery).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DedupeKey {
    Order { detail_type: DetailType, order_id: String },
    Event(String),
}

impl DedupeKey {
    /// The dedupe record's partition key: `Dedupe#Order#<detail-type>#<orderId>` or
    /// `Dedupe#<event id>`. Event IDs cannot hold `#`, so the two forms never meet.
    pub fn partition_key(&self) -> String {
        match self {
            DedupeKey::Order { detail_type, order_id } => {
                format!("{DEDUPE_PK_PREFIX}Order#{}#{order_id}", detail_type.as_str())
            }
            DedupeKey::Event(id) => format!("{DEDUPE_PK_PREFIX}{id}"),
        }
    }

    /// Reads a partition key back ([`DedupeKey::partition_key`]); `None` when it is not one.
    pub fn read(pk: &str) -> Option<Self> {
        let rest = pk.strip_prefix(DEDUPE_PK_PREFIX)?;
        let key = match rest.strip_prefix("Order#") {
            Some(order) => {
                let (detail_type, order_id) = order.split_once('#')?;
                DedupeKey::Order { detail_type: DetailType::parse(detail_type)?, order_id: order_id.to_owned() }
            }
            None => DedupeKey::Event(rest.to_owned()),
        };
        let id = match &key {
            DedupeKey::Order { order_id, .. } => order_id,
            DedupeKey::Event(id) => id,
        };
        (!id.is_empty() && key.partition_key() == pk).then_some(key)
    }
}

/// One order event, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderEvent {
    /// The EventBridge event ID.
    pub id: String,
    pub dedupe: DedupeKey,
    /// The event's `time`, in UTC.
    pub time: DateTime<Utc>,
    /// The UTC day of the event's `time`: when the order happened, not when it was counted.
    pub day: NaiveDate,
    pub kind: OrderKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrderKind {
    WaitingCompletion { drink: Drink },
    Completed,
    Cancelled,
}

impl OrderKind {
    /// What an event of `detail_type` with `drink` is; `None` for a `WaitingCompletion`
    /// without a drink.
    pub fn new(detail_type: DetailType, drink: Option<Drink>) -> Option<Self> {
        Some(match detail_type {
            DetailType::WaitingCompletion => OrderKind::WaitingCompletion { drink: drink? },
            DetailType::OrderCompleted => OrderKind::Completed,
            DetailType::OrderCancelled => OrderKind::Cancelled,
        })
    }

    /// The detail-type of events of this kind.
    pub fn detail_type(&self) -> DetailType {
        match self {
            OrderKind::WaitingCompletion { .. } => DetailType::WaitingCompletion,
            OrderKind::Completed => DetailType::OrderCompleted,
            OrderKind::Cancelled => DetailType::OrderCancelled,
        }
    }

    /// The counters an event of this kind increments by one on `day`.
    pub fn metric_keys(&self, day: NaiveDate) -> Vec<MetricKey> {
        let mut keys = vec![MetricKey::new(day, Metric::Fixed(self.detail_type().counts()))];
        if let OrderKind::WaitingCompletion { drink } = self {
            keys.push(MetricKey::new(day, Metric::Drink(drink.as_str().to_owned())));
        }
        keys
    }
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
    #[error("no drink in the {0} detail (`detail.drinkOrder.drink` must be a string)")]
    NoDrink(&'static str),
    #[error("{0}")]
    BadDrink(#[from] BadDrink),
    #[error("orderId is invalid: {0}")]
    BadOrderId(String),
    #[error("time {time} is more than {MAX_CLOCK_SKEW_SECS} s ahead of the clock ({now})")]
    FromTheFuture { time: DateTime<Utc>, now: DateTime<Utc> },
    /// Older than the dedupe window ([`window::MAX_EVENT_AGE_SECS`]): its dedupe record may be
    /// gone, so counting it could count its order twice. A redrive or an archive replay of an
    /// old event ends here; counting it on purpose is a backfill.
    #[error(
        "time {time} is more than {} s before the clock ({now}): older than the dedupe window, so it may have been \
         counted already; count old orders on purpose with a backfill",
        window::MAX_EVENT_AGE_SECS
    )]
    TooOld { time: DateTime<Utc>, now: DateTime<Utc> },
}

/// Which events' ages are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Events older than the dedupe window are refused ([`BadEvent::TooOld`]): what
    /// PublishMetrics does.
    Bounded,
    /// Events of any age are counted: a deliberate backfill, whose dedupe records start a fresh
    /// window.
    Backfill,
}

/// An ID field: a string or an integer (apps send both), 1 to [`MAX_ID_BYTES`] bytes without
/// control characters.
fn id_field(value: &serde_json::Value, what: &str) -> Result<String, String> {
    let id = match value {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => return Err(format!("{what} must be a string or an integer, not {}", json_kind(other))),
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("{what} must be 1 to {MAX_ID_BYTES} bytes, not {}", id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} {id:?} holds a control character"));
    }
    Ok(id)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a non-integer number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl OrderEvent {
    /// Parses an SQS message body holding an EventBridge event, reading only what is counted:
    /// the envelope's `id`, `source`, `detail-type` and `time`, `detail.orderId` when present,
    /// and `detail.drinkOrder.drink` for `WaitingCompletion`. Every other field may be absent or
    /// of any type. `now` is the handler's clock, for refusing events from the future.
    /// Events older than the dedupe window are refused ([`BadEvent::TooOld`]).
    pub fn from_body(body: &str, now: DateTime<Utc>) -> Result<Self, BadEvent> {
        Self::read_body(body, now, Age::Bounded)
    }

    /// [`OrderEvent::from_body`], with the age check `age`.
    pub fn read_body(body: &str, now: DateTime<Utc>, age: Age) -> Result<Self, BadEvent> {
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| BadEvent::NotJson(e.to_string()))?;
        Self::read(&value, now, age)
    }

    /// [`OrderEvent::from_body`] of a parsed body.
    pub fn from_value(event: &serde_json::Value, now: DateTime<Utc>) -> Result<Self, BadEvent> {
        Self::read(event, now, Age::Bounded)
    }

    fn read(event: &serde_json::Value, now: DateTime<Utc>, age: Age) -> Result<Self, BadEvent> {
        let not_event = |m: String| BadEvent::NotAnEvent(m);
        let Some(envelope) = event.as_object() else {
            return Err(not_event(format!("the body is {}, not an object", json_kind(event))));
        };
        let text = |field: &str| -> Result<&str, BadEvent> {
            match envelope.get(field) {
                Some(serde_json::Value::String(s)) => Ok(s),
                Some(other) => Err(not_event(format!("`{field}` must be a string, not {}", json_kind(other)))),
                None => Err(not_event(format!("missing field `{field}`"))),
            }
        };
        let id = id_field(envelope.get("id").unwrap_or(&serde_json::Value::Null), "id").map_err(not_event)?;
        if id.contains('#') {
            return Err(not_event(format!("id {id:?} holds `#`")));
        }
        let source = text("source")?;
        let detail_type = text("detail-type")?;
        let time = text("time")?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|e| not_event(format!("time {time:?} is not an RFC 3339 timestamp: {e}")))?
            .with_timezone(&Utc);
        if source != SOURCE {
            return Err(BadEvent::UnknownSource(source.to_owned()));
        }
        let detail_type =
            DetailType::parse(detail_type).ok_or_else(|| BadEvent::UnknownDetailType(detail_type.to_owned()))?;
        if time > now + chrono::Duration::seconds(MAX_CLOCK_SKEW_SECS) {
            return Err(BadEvent::FromTheFuture { time, now });
        }
        if age == Age::Bounded && time < now - chrono::Duration::seconds(window::MAX_EVENT_AGE_SECS.into()) {
            return Err(BadEvent::TooOld { time, now });
        }
        let detail = envelope.get("detail");
        let dedupe = match detail.and_then(|d| d.get("orderId")) {
            None | Some(serde_json::Value::Null) => DedupeKey::Event(id.clone()),
            Some(order_id) => {
                DedupeKey::Order { detail_type, order_id: id_field(order_id, "orderId").map_err(BadEvent::BadOrderId)? }
            }
        };
        // Only a `WaitingCompletion` counts a drink; the others' drinkOrder, if any, is not read.
        let drink = match (detail_type, detail.and_then(|d| d.get("drinkOrder")).and_then(|d| d.get("drink"))) {
            (DetailType::WaitingCompletion, Some(serde_json::Value::String(drink))) => Some(Drink::parse(drink)?),
            _ => None,
        };
        let kind = OrderKind::new(detail_type, drink).ok_or(BadEvent::NoDrink(detail_type.as_str()))?;
        Ok(OrderEvent { id, dedupe, time, day: time.date_naive(), kind })
    }

    /// The detail-type it was published under.
    pub fn detail_type(&self) -> DetailType {
        self.kind.detail_type()
    }

    /// The counters this event increments by one.
    pub fn metric_keys(&self) -> Vec<MetricKey> {
        self.kind.metric_keys(self.day)
    }
}

/// The metrics every day holds besides its drinks, declared once: the name each has in the
/// sort key (which no drink may take, in any case) and its column in the investors' report.
/// `strum` lists every variant in `Fixed::VARIANTS`, so one added here is parsed, reserved and
/// reported without another list to update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::VariantArray)]
pub enum Fixed {
    /// Orders started (`OrderManager.WaitingCompletion`).
    TotalSales,
    Completed,
    Cancelled,
}

pub use strum::VariantArray;

impl Fixed {
    /// Its name in the sort key (`YYYY-MM-DD#<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Fixed::TotalSales => "TotalSales",
            Fixed::Completed => "Completed",
            Fixed::Cancelled => "Cancelled",
        }
    }

    /// Its column in the investors' report.
    pub fn column(self) -> &'static str {
        match self {
            Fixed::TotalSales => "total",
            Fixed::Completed => "completed",
            Fixed::Cancelled => "cancelled",
        }
    }
}

/// What a counter counts on its day.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Fixed(Fixed),
    /// Sales of one drink, by its raw name.
    Drink(String),
}

impl Metric {
    /// The name in the sort key: a fixed metric's, or the drink's raw name.
    pub fn name(&self) -> &str {
        match self {
            Metric::Fixed(f) => f.name(),
            Metric::Drink(d) => d,
        }
    }
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
        format!("{}#{}", self.day.format("%Y-%m-%d"), self.metric.name())
    }

    /// Reads a sort key back; `None` when it is not a key PublishMetrics writes ([`MetricKey::read`]).
    pub fn parse_sort_key(sk: &str) -> Option<Self> {
        Self::read(sk).ok()
    }

    /// Reads a sort key back, strictly: exactly what [`MetricKey::sort_key`] writes, a zero-padded
    /// `YYYY-MM-DD`, `#`, then a fixed metric's name or a drink name as [`Drink::parse`] leaves it.
    /// Anything else (`2024-5-1#Latte`, a drink no event could have produced) is refused with why,
    /// never merged into a real day.
    pub fn read(sk: &str) -> Result<Self, String> {
        let (day, rest) = sk.split_once('#').ok_or("has no `#` between the day and the metric")?;
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| format!("day {day:?} is not a date"))?;
        let metric = match Fixed::VARIANTS.iter().find(|m| m.name() == rest) {
            Some(f) => Metric::Fixed(*f),
            None => match Drink::parse(rest) {
                Ok(d) if d.as_str() == rest => Metric::Drink(rest.to_owned()),
                Ok(d) => return Err(format!("drink {rest:?} is not as counted ({:?})", d.as_str())),
                Err(e) => return Err(e.to_string()),
            },
        };
        let key = MetricKey { day, metric };
        if key.sort_key() != sk {
            return Err(format!("is not written as {:?}", key.sort_key()));
        }
        Ok(key)
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
mod tests;
