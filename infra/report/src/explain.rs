//! What made a day's numbers (`report --explain DAY`): the dedupe records of the orders counted
//! on that day, each naming the event that made the count and when, summed and set against the
//! day's counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::NaiveDate;
use order_events::{provenance, DedupeKey, DetailType, Drink, OrderKind, DEDUPE_PK_PREFIX, PARTITION_KEY};
use serde::Serialize;

use crate::{days, printable, Day, ReportError};

/// One counted order, as its dedupe record tells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Provenance {
    /// The event's time (the source's clock), RFC 3339.
    pub event_time: String,
    pub event_id: String,
    pub detail_type: &'static str,
    /// The order ID it was deduplicated by, or none when it was deduplicated by its event ID.
    pub order_id: Option<String>,
    pub drink: Option<String>,
    /// When the message entered the queue, when SQS said.
    pub sent_at: Option<String>,
    /// When PublishMetrics counted it.
    pub counted_at: String,
}

impl Provenance {
    /// What the order counted on `day`, as the kind [`OrderKind::metric_keys`] increments.
    fn kind(&self) -> Option<OrderKind> {
        let detail_type = DetailType::parse(self.detail_type)?;
        let drink = self.drink.as_deref().map(Drink::parse).transpose().ok()?;
        OrderKind::new(detail_type, drink)
    }
}

/// The dedupe records of the orders counted on `day` (by their event time), in time order. A
/// record that is not as PublishMetrics writes it is an error naming it.
pub async fn provenance(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    day: NaiveDate,
) -> Result<Vec<Provenance>, ReportError> {
    let mut out = Vec::new();
    // Dedupe records are keyed by order, not by day: a filtered scan (the records expire with
    // the dedupe window, so the table stays small).
    let mut items = ddb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .filter_expression("begins_with(#pk, :dedupe) AND begins_with(#time, :day)")
        .expression_attribute_names("#pk", PARTITION_KEY)
        .expression_attribute_names("#time", provenance::EVENT_TIME)
        .expression_attribute_values(":dedupe", AttributeValue::S(DEDUPE_PK_PREFIX.to_owned()))
        .expression_attribute_values(":day", AttributeValue::S(day.format("%Y-%m-%d").to_string()))
        .into_paginator()
        .items()
        .send();
    while let Some(item) = items.next().await {
        let item =
            item.map_err(|e| ReportError::Query { table: table.to_owned(), message: connection::sdk_error(&e) })?;
        out.push(record(table, &item)?);
    }
    out.sort();
    Ok(out)
}

/// One dedupe record read strictly.
fn record(table: &str, item: &HashMap<String, AttributeValue>) -> Result<Provenance, ReportError> {
    let pk = item.get(PARTITION_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let bad = |why: String| ReportError::Item { table: table.to_owned(), item: printable(&pk), why };
    let text = |name: &str| -> Result<Option<String>, ReportError> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!("has {name} {other:?}, not a string"))),
        }
    };
    let required = |name: &str| text(name)?.ok_or_else(|| bad(format!("has no {name}")));
    let key = DedupeKey::read(&pk).ok_or_else(|| bad("is not a dedupe record's key".to_owned()))?;
    let detail_type = required(provenance::DETAIL_TYPE)?;
    let detail_type = DetailType::parse(&detail_type)
        .ok_or_else(|| bad(format!("has {} {detail_type:?}, not a counted detail-type", provenance::DETAIL_TYPE)))?;
    let order_id = match key {
        DedupeKey::Order { detail_type: keyed, order_id } if keyed == detail_type => Some(order_id),
        DedupeKey::Order { .. } => return Err(bad(format!("is keyed under another detail-type than {detail_type:?}"))),
        DedupeKey::Event(_) => None,
    };
    let record = Provenance {
        event_time: required(provenance::EVENT_TIME)?,
        event_id: required(provenance::EVENT_ID)?,
        detail_type: detail_type.as_str(),
        order_id,
        drink: text(provenance::DRINK)?,
        sent_at: text(provenance::SENT_AT)?,
        counted_at: required(provenance::COUNTED_AT)?,
    };
    if record.kind().is_none() {
        return Err(bad(format!("has no valid {} for a {}", provenance::DRINK, detail_type.as_str())));
    }
    Ok(record)
}

/// A day's counters set against the records of what was counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub day: NaiveDate,
    /// The day's counters as the report shows them.
    pub counters: Day,
    /// The same metrics summed from the records.
    pub from_records: Day,
    pub records: Vec<Provenance>,
    /// Metrics where the two differ: (column or drink, counters, records).
    pub differences: Vec<(String, u64, u64)>,
    /// Whether the day is recent enough that every record of it should still exist.
    pub within_window: bool,
}

/// Sets `records` (the day's, from [`provenance`]) against the table's `counters`; `today` is
/// the clock the window is judged by.
pub fn explain(
    day: NaiveDate,
    counters: &BTreeMap<String, u64>,
    records: Vec<Provenance>,
    today: NaiveDate,
) -> Result<Explanation, ReportError> {
    let one = |counters: &BTreeMap<String, u64>| -> Result<Day, ReportError> {
        Ok(days(counters, Some(day), Some(day))?.pop().unwrap_or(Day { day, ..Default::default() }))
    };
    let mut summed: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        for key in r.kind().map(|k| k.metric_keys(day)).unwrap_or_default() {
            *summed.entry(key.sort_key()).or_default() += 1;
        }
    }
    let counters = one(counters)?;
    let from_records = one(&summed)?;
    let mut differences = Vec::new();
    for f in <order_events::Fixed as order_events::VariantArray>::VARIANTS {
        let (a, b) = (counters.count(*f), from_records.count(*f));
        if a != b {
            differences.push((f.column().to_owned(), a, b));
        }
    }
    let drinks: std::collections::BTreeSet<&String> =
        counters.drinks.keys().chain(from_records.drinks.keys()).collect();
    for d in drinks {
        let (a, b) = (counters.drinks.get(d).copied().unwrap_or(0), from_records.drinks.get(d).copied().unwrap_or(0));
        if a != b {
            differences.push((d.clone(), a, b));
        }
    }
    // Records live DEDUPE_TTL_SECS after their count; a day whose last event is younger than
    // the event-age bound was counted recently enough that all its records still exist.
    let window_days = i64::from(order_events::window::MAX_EVENT_AGE_SECS / order_events::window::DAY_SECS);
    let within_window = (today - day).num_days() < window_days;
    Ok(Explanation { day, counters, from_records, records, differences, within_window })
}

impl Explanation {
    /// The numbers are explained: every counter is the sum of its records.
    pub fn reconciles(&self) -> bool {
        self.differences.is_empty()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} counted orders on record", self.day, self.records.len())?;
        if !self.records.is_empty() {
            writeln!(f, "event time                event id                              detail-type                     order id  drink  counted at")?;
        }
        for r in &self.records {
            writeln!(
                f,
                "{:<24}  {:<36}  {:<30}  {}  {}  {}",
                printable(&r.event_time),
                printable(&r.event_id),
                r.detail_type,
                printable(r.order_id.as_deref().unwrap_or("-")),
                printable(r.drink.as_deref().unwrap_or("-")),
                printable(&r.counted_at),
            )?;
        }
        if self.reconciles() {
            return writeln!(f, "every counter of {} is the sum of these records", self.day);
        }
        for (metric, counters, records) in &self.differences {
            writeln!(f, "{}: the counter says {counters}, the records {records}", printable(metric))?;
        }
        if self.within_window {
            writeln!(
                f,
                "these counts are not explained by their records: something other than PublishMetrics wrote the counters, or records were deleted"
            )
        } else {
            writeln!(
                f,
                "{} is older than the dedupe window: records expire {} days after their count, so older counts cannot all be explained",
                self.day,
                order_events::window::DEDUPE_TTL_SECS / order_events::window::DAY_SECS
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, id: &str, detail_type: DetailType, drink: Option<&str>) -> Provenance {
        Provenance {
            event_time: time.to_owned(),
            event_id: id.to_owned(),
            detail_type: detail_type.as_str(),
            order_id: Some(id.to_owned()),
            drink: drink.map(str::to_owned),
            sent_at: None,
            counted_at: time.to_owned(),
        }
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn records_that_sum_to_the_counters_reconcile() {
        let counters: BTreeMap<String, u64> = [
            ("2024-05-01#TotalSales", 2),
            ("2024-05-01#Latte", 2),
            ("2024-05-01#Completed", 1),
            ("2024-05-02#Latte", 7),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let records = vec![
            record("2024-05-01T10:00:00.000Z", "a", DetailType::WaitingCompletion, Some("Latte")),
            record("2024-05-01T11:00:00.000Z", "b", DetailType::WaitingCompletion, Some("Latte")),
            record("2024-05-01T12:00:00.000Z", "a", DetailType::OrderCompleted, None),
        ];
        let e = explain(date("2024-05-01"), &counters, records.clone(), date("2024-05-02")).unwrap();
        assert!(e.reconciles(), "{e}");
        assert!(e.to_string().contains("every counter of 2024-05-01 is the sum of these records"), "{e}");
        // A counter one above its records (a forged or double write) is named, with both numbers.
        let mut forged = counters.clone();
        forged.insert("2024-05-01#Latte".into(), 3);
        let e = explain(date("2024-05-01"), &forged, records.clone(), date("2024-05-02")).unwrap();
        assert_eq!(e.differences, [("Latte".to_owned(), 3, 2)]);
        assert!(e.to_string().contains("not explained by their records"), "{e}");
        // Past the window, missing records are expected and said so.
        let e = explain(date("2024-05-01"), &forged, records, date("2024-06-01")).unwrap();
        assert!(!e.within_window && e.to_string().contains("older than the dedupe window"), "{e}");
    }

    #[test]
    fn a_record_is_read_strictly() {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let good: HashMap<String, AttributeValue> = [
            (PARTITION_KEY, s("Dedupe#Order#OrderManager.WaitingCompletion#o1")),
            (provenance::DETAIL_TYPE, s("OrderManager.WaitingCompletion")),
            (provenance::EVENT_ID, s("e1")),
            (provenance::EVENT_TIME, s("2024-05-01T10:00:00.000Z")),
            (provenance::COUNTED_AT, s("2024-05-01T10:00:01.000Z")),
            (provenance::DRINK, s("Latte")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let r = super::record("t", &good).unwrap();
        assert_eq!((r.order_id.as_deref(), r.drink.as_deref()), (Some("o1"), Some("Latte")));
        let with = |k: &str, v: Option<AttributeValue>| {
            let mut item = good.clone();
            match v {
                Some(v) => item.insert(k.to_owned(), v),
                None => item.remove(k),
            };
            super::record("t", &item).unwrap_err().to_string()
        };
        assert!(with(provenance::DRINK, None).contains("has no valid drink"));
        assert!(with(provenance::DRINK, Some(s("total"))).contains("has no valid drink"));
        assert!(with(provenance::EVENT_ID, None).contains("has no eventId"));
        assert!(with(provenance::EVENT_TIME, Some(AttributeValue::N("1".into()))).contains("not a string"));
        assert!(with(provenance::DETAIL_TYPE, Some(s("OrderManager.OrderCompleted"))).contains("another detail-type"));
        assert!(with(PARTITION_KEY, Some(s("Aggregate"))).contains("not a dedupe record's key"));
    }
}
