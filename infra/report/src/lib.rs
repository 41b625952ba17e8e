//! The investors' report: the metrics table's counters ([`counters`]) grouped per day (total,
//! per drink, completed, cancelled), as a table, JSON, CSV or an SVG chart. The library returns
//! data; the `report` binary prints it.

pub mod cli;
pub mod explain;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use order_events::{Fixed, Metric, MetricKey, VariantArray};
use order_events::{AGGREGATE_PK, COUNTER_ATTRIBUTE, PARTITION_KEY, SORT_KEY};
use serde::ser::SerializeMap;
use serde::Serialize;

/// Why the counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot query {table}: {message}")]
    Query { table: String, message: String },
    /// A counter item that is not what PublishMetrics writes: rather than count it as 0 (and
    /// hand investors a wrong total), the report stops and names it.
    #[error("{table}: the counter item {item} {why}")]
    Item { table: String, item: String, why: String },
    /// A counter whose sort key PublishMetrics would not have written, or a day whose sum does
    /// not fit: the report stops rather than merge it into a real day or wrap around.
    #[error("counter {key:?}: {why}")]
    Counter { key: String, why: String },
}

/// Every counter of the metrics table (the items under the aggregate partition key): sort key
/// -> `val`. An item without a string `SK` or a whole-number `val` is an error naming it.
pub async fn counters(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<BTreeMap<String, u64>, ReportError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut out = BTreeMap::new();
    let mut items = ddb
        .query()
        .table_name(table)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", PARTITION_KEY)
        .expression_attribute_values(":pk", AttributeValue::S(AGGREGATE_PK.to_owned()))
        .into_paginator()
        .items()
        .send();
    while let Some(item) = items.next().await {
        let item =
            item.map_err(|e| ReportError::Query { table: table.to_owned(), message: connection::sdk_error(&e) })?;
        let (sk, val) = counter(table, &item)?;
        out.insert(sk, val);
    }
    Ok(out)
}

/// One counter item as (sort key, value).
fn counter(
    table: &str,
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> Result<(String, u64), ReportError> {
    let bad = |item: String, why: String| ReportError::Item { table: table.to_owned(), item, why };
    let sk = match item.get(SORT_KEY).map(|v| v.as_s()) {
        Some(Ok(sk)) => sk.clone(),
        other => return Err(bad(format!("{item:?}"), format!("has no string {SORT_KEY} ({other:?})"))),
    };
    let val = match item.get(COUNTER_ATTRIBUTE).map(|v| v.as_n()) {
        Some(Ok(n)) => {
            n.parse::<u64>().map_err(|_| bad(printable(&sk), format!("has {COUNTER_ATTRIBUTE} {n}, not a count")))?
        }
        other => return Err(bad(printable(&sk), format!("has no number {COUNTER_ATTRIBUTE} ({other:?})"))),
    };
    Ok((sk, val))
}

/// One day's metrics: the fixed ones ([`Fixed`]) and one count per drink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Day {
    pub day: NaiveDate,
    pub fixed: BTreeMap<Fixed, u64>,
    pub drinks: BTreeMap<String, u64>,
}

impl Day {
    /// The day's count of a fixed metric (0 when nothing was counted).
    pub fn count(&self, metric: Fixed) -> u64 {
        self.fixed.get(&metric).copied().unwrap_or(0)
    }
}

impl Serialize for Day {
    /// `{"day", <each fixed metric's column>, "drinks"}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Fixed::VARIANTS.len() + 2))?;
        map.serialize_entry(order_events::DAY_COLUMN, &self.day)?;
        for f in Fixed::VARIANTS {
            map.serialize_entry(f.column(), &self.count(*f))?;
        }
        map.serialize_entry(order_events::DRINKS_KEY, &self.drinks)?;
        map.end()
    }
}

/// The columns before the drinks: the day, then each fixed metric's.
fn fixed_columns() -> Vec<String> {
    std::iter::once(order_events::DAY_COLUMN)
        .chain(Fixed::VARIANTS.iter().map(|f| f.column()))
        .map(str::to_owned)
        .collect()
}

/// A day's cells before its drinks.
fn fixed_cells(d: &Day) -> Vec<String> {
    std::iter::once(d.day.to_string()).chain(Fixed::VARIANTS.iter().map(|f| d.count(*f).to_string())).collect()
}

/// Groups counters (sort key -> value) per day, keeping days in `from..=to`. A sort key that
/// PublishMetrics would not have written ([`MetricKey::read`]) is an error naming it, as is a
/// sum that does not fit a `u64`.
pub fn days(
    counters: &BTreeMap<String, u64>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<Day>, ReportError> {
    let mut out: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for (sk, val) in counters {
        let key = MetricKey::read(sk).map_err(|why| ReportError::Counter { key: sk.clone(), why })?;
        if from.is_some_and(|f| key.day < f) || to.is_some_and(|t| key.day > t) {
            continue;
        }
        let day = out.entry(key.day).or_insert_with(|| Day { day: key.day, ..Default::default() });
        let (name, total) = match key.metric {
            Metric::Fixed(f) => (f.name().to_owned(), day.fixed.entry(f).or_default()),
            Metric::Drink(d) => (d.clone(), day.drinks.entry(d).or_default()),
        };
        *total = total.checked_add(*val).ok_or_else(|| ReportError::Counter {
            key: sk.clone(),
            why: format!("the day's {name} does not fit in 64 bits"),
        })?;
    }
    Ok(out.into_values().collect())
}

fn drinks(days: &[Day]) -> Vec<String> {
    days.iter().flat_map(|d| d.drinks.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// `s` safe to print on a terminal: control characters and the bidirectional overrides that
/// can reorder what a reader sees (U+202A..U+202E, U+2066..U+2069) are written as `\u{..}`.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// An aligned table: one row per day, one column per drink.
pub fn table(days: &[Day]) -> String {
    let drinks = drinks(days);
    let mut header = fixed_columns();
    header.extend(drinks.iter().map(|d| printable(d)));
    let rows: Vec<Vec<String>> = days
        .iter()
        .map(|d| {
            let mut r = fixed_cells(d);
            r.extend(drinks.iter().map(|k| d.drinks.get(k).copied().unwrap_or(0).to_string()));
            r
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let mut s: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ");
        s.push('\n');
        s
    };
    let mut out = line(&header);
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// One CSV cell from text. A cell a spreadsheet would read as a formula (starting with `=`,
/// `+`, `-`, `@`, tab or CR) gets a leading `'` (OWASP's advice on CSV injection); a cell holding
/// `,`, `"`, CR or LF is quoted.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// CSV with the same columns as the table; drink names pass through [`csv_cell`].
pub fn csv(days: &[Day]) -> String {
    let drinks = drinks(days);
    let mut out = fixed_columns().join(",");
    for d in &drinks {
        out.push(',');
        out.push_str(&csv_cell(d));
    }
    out.push('\n');
    for d in days {
        out.push_str(&fixed_cells(d).join(","));
        for k in &drinks {
            out.push_str(&format!(",{}", d.drinks.get(k).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}

/// Plotters failed to draw (its errors are generic over the backend; their text is kept).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

/// An SVG line chart of daily orders per drink, one line per drink.
pub fn chart(days: &[Day]) -> Result<String, ChartError> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let drinks = drinks(days);
    let labels: Vec<String> = days.iter().map(|d| d.day.to_string()).collect();
    let max = days.iter().flat_map(|d| d.drinks.values()).copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Serverlesspresso: daily orders per drink", ("sans-serif", 24))
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0..days.len().saturating_sub(1).max(1), 0..max + max / 10 + 1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(days.len().clamp(1, 12))
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .y_desc("orders")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, drink) in drinks.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(usize, u64)> =
                days.iter().enumerate().map(|(x, d)| (x, d.drinks.get(drink).copied().unwrap_or(0))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(drink.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn item(
        sk: Option<AttributeValue>,
        val: Option<AttributeValue>,
    ) -> std::collections::HashMap<String, AttributeValue> {
        sk.map(|v| (SORT_KEY.to_owned(), v)).into_iter().chain(val.map(|v| (COUNTER_ATTRIBUTE.to_owned(), v))).collect()
    }

    #[test]
    fn every_fixed_metric_is_a_column_of_each_format() {
        let counters: BTreeMap<String, u64> = Fixed::VARIANTS
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("2024-05-01#{}", f.name()), i as u64 + 1))
            .chain([("2024-05-01#Latte".to_owned(), 9)])
            .collect();
        let all = days(&counters, None, None).unwrap();
        let json = serde_json::to_value(&all[0]).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec!["day", "drinks"];
        want.extend(Fixed::VARIANTS.iter().map(|f| f.column()));
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want);
        for (i, f) in Fixed::VARIANTS.iter().enumerate() {
            assert_eq!(json[f.column()], i as u64 + 1, "{f:?}");
        }
        let header = fixed_columns().join(",") + ",Latte";
        assert_eq!(csv(&all).lines().next(), Some(header.as_str()));
        assert!(table(&all).lines().next().unwrap().split_whitespace().eq(header.split(',')));
    }

    #[test]
    fn a_counter_item_is_read_exactly_or_refused_by_name() {
        let s = |v: &str| Some(AttributeValue::S(v.to_owned()));
        let n = |v: &str| Some(AttributeValue::N(v.to_owned()));
        let ok = counter("t", &item(s("2024-05-01#Latte"), n("18446744073709551615"))).unwrap();
        assert_eq!(ok, ("2024-05-01#Latte".to_owned(), u64::MAX));
        assert_eq!(counter("t", &item(s("2024-05-01#Latte"), n("0"))).unwrap().1, 0);
        for (sk, val, says) in [
            (
                s("2024-05-01#Latte"),
                n("18446744073709551616"),
                "2024-05-01#Latte has val 18446744073709551616, not a count",
            ),
            (s("2024-05-01#Latte"), n("-1"), "has val -1, not a count"),
            (s("2024-05-01#Latte"), n("1.5"), "has val 1.5, not a count"),
            (s("2024-05-01#Latte"), s("3"), "has no number val"),
            (s("2024-05-01#Latte"), None, "has no number val (None)"),
            (n("7"), n("1"), "has no string SK"),
            (None, n("1"), "has no string SK (None)"),
            (s("2024-05-01#\u{202e}ettaL"), s("x"), "2024-05-01#\\u{202e}ettaL has no number val"),
        ] {
            let e = counter("the-table", &item(sk, val)).unwrap_err().to_string();
            assert!(e.starts_with("the-table: the counter item "), "{e}");
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    fn counters() -> BTreeMap<String, u64> {
        [
            ("2024-05-01#TotalSales", 5),
            ("2024-05-01#Latte", 3),
            ("2024-05-01#Flat White", 2),
            ("2024-05-01#Completed", 4),
            ("2024-05-02#TotalSales", 1),
            ("2024-05-02#Latte", 1),
            ("2024-05-02#Cancelled", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn counters_group_per_day_within_the_range() {
        let all = days(&counters(), None, None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].count(Fixed::TotalSales), all[0].count(Fixed::Completed), all[0].count(Fixed::Cancelled)),
            (5, 4, 0)
        );
        assert_eq!(all[0].drinks, [("Flat White".to_owned(), 2), ("Latte".to_owned(), 3)].into());
        assert_eq!(days(&counters(), Some(date("2024-05-02")), None).unwrap().len(), 1);
        assert_eq!(days(&counters(), None, Some(date("2024-05-01"))).unwrap()[0].day, date("2024-05-01"));
        assert!(days(&counters(), Some(date("2024-05-03")), None).unwrap().is_empty());
    }

    #[test]
    fn chart_draws_a_line_per_drink() {
        let svg = chart(&days(&counters(), None, None).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in ["daily orders per drink", "Latte", "Flat White", "2024-05-01", "2024-05-02"] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(svg.matches("<polyline").count() >= 2, "one line per drink");
        assert!(chart(&[]).is_ok(), "an empty report still draws axes");
    }

    #[test]
    fn formats() {
        let d = days(&counters(), None, None).unwrap();
        assert_eq!(
            table(&d),
            "day         total  completed  cancelled  Flat White  Latte\n\
             2024-05-01      5          4          0           2      3\n\
             2024-05-02      1          0          1           0      1\n"
        );
        assert_eq!(
            csv(&d),
            "day,total,completed,cancelled,Flat White,Latte\n2024-05-01,5,4,0,2,3\n2024-05-02,1,0,1,0,1\n"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json[1]["drinks"]["Latte"], 1);
        assert_eq!(json[0]["day"], "2024-05-01");
        let mut odd = counters();
        odd.insert("2024-05-01#Mocha, large".into(), 1);
        assert!(csv(&days(&odd, None, None).unwrap())
            .starts_with("day,total,completed,cancelled,Flat White,Latte,\"Mocha, large\"\n"));
    }

    #[test]
    fn csv_cells_never_become_formulas() {
        assert_eq!(csv_cell("Latte"), "Latte");
        assert_eq!(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("a\rb"), "\"a\rb\"", "CR is quoted");
        assert_eq!(csv_cell("a-b"), "a-b", "only a leading sign is a formula");
        let mut c = counters();
        c.insert("2024-05-01#=1+2".into(), 1);
        let out = csv(&days(&c, None, None).unwrap());
        assert!(out.lines().next().unwrap().contains(",'=1+2,"), "{out}");
    }

    #[test]
    fn keys_no_event_could_produce_are_refused_not_merged_and_sums_never_wrap() {
        let refused = |sk: &str| {
            let c: BTreeMap<String, u64> = [(sk.to_owned(), 1)].into();
            match days(&c, None, None) {
                Err(ReportError::Counter { key, why }) => assert_eq!(key, sk, "{why}"),
                other => panic!("{sk:?}: {other:?}"),
            }
        };
        for sk in [
            "2024-5-1#Latte",
            "2024-05-01#total",
            "2024-05-01# Latte",
            "2024-05-01#Cafe\u{301}",
            "2024-05-01#",
            "Latte",
            "2024-13-01#Latte",
            "2024-05-01#L\u{430}tte",
        ] {
            refused(sk);
        }
        let c: BTreeMap<String, u64> =
            [("2024-05-01#Latte".into(), u64::MAX), ("2024-05-01#TotalSales".into(), 1)].into();
        assert!(days(&c, None, None).is_ok());
        // Two keys cannot add up to one metric here, but a day's sum is checked all the same.
        let d = days(&c, None, None).unwrap();
        assert_eq!(d[0].drinks["Latte"], u64::MAX);
    }

    #[test]
    fn the_table_escapes_control_characters() {
        assert_eq!(printable("Latte"), "Latte");
        assert_eq!(printable("La\u{1b}[2Jtte"), "La\\u{1b}[2Jtte");
        assert_eq!(printable("a\nb\u{7}"), "a\\u{a}b\\u{7}");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable("Caf\u{e9}"), "Caf\u{e9}");
        // Such a name is never counted (and `days` refuses it); the table escapes it anyway.
        let mut c = counters();
        c.insert("2024-05-01#Evil\u{1b}]0;title\u{7}".into(), 1);
        assert!(matches!(days(&c, None, None), Err(ReportError::Counter { .. })));
        let mut d = days(&counters(), None, None).unwrap();
        d[0].drinks.insert("Evil\u{1b}]0;title\u{7}".into(), 1);
        let t = table(&d);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t}");
        assert!(t.contains("Evil\\u{1b}]0;title\\u{7}"), "{t}");
        // Columns align by characters, not bytes.
        let mut c = counters();
        c.insert("2024-05-01#Caf\u{e9}".into(), 1);
        let t = table(&days(&c, None, None).unwrap());
        let widths: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
    }
}
