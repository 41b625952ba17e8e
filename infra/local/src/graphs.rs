//! The workshop's graphs from a local run: the stack dashboard's widgets, drawn from the run's
//! own series into one self-contained HTML file (inline SVG; nothing fetched). Each widget's
//! title and lines come from the dashboard's declaration; a metric line is bound to the series
//! that measures it here, and the one expression the dashboard uses (`m/PERIOD(m)`, units per
//! second) is computed. The series are embedded as JSON, for tools and tests to read back.

use cfn::constructs::cloudwatch::{GraphWidget, Line, Metric};
use serde::Serialize;

use crate::series::{Sample, Series};
use crate::LocalError;

/// Which series of a run measures a dashboard metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Field {
    Concurrency,
    Throttles,
    Waiting,
    InFlight,
    DeadLetters,
    OldestAge,
    Counted,
    Duplicates,
    Bad,
    Failed,
    ConsumedWcu,
    /// The table's provisioned WCU, as a line.
    Provisioned,
}

impl Field {
    fn value(self, s: &Sample, series: &Series) -> Option<f64> {
        Some(match self {
            Field::Concurrency => f64::from(s.concurrency),
            Field::Throttles => s.throttles as f64,
            Field::Waiting => s.waiting as f64,
            Field::InFlight => s.in_flight as f64,
            Field::DeadLetters => s.dead_letters as f64,
            Field::OldestAge => s.oldest_age_secs.unwrap_or(0.0) / series.time_scale,
            Field::Counted => s.counted as f64,
            Field::Duplicates => s.duplicates as f64,
            Field::Bad => s.bad as f64,
            Field::Failed => s.failed as f64,
            Field::ConsumedWcu => s.consumed_wcu as f64,
            Field::Provisioned => series.provisioned_per_second()?,
        })
    }
}

/// One line of a chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChartLine {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// A limit rather than a measurement (drawn red).
    pub limit: bool,
}

/// One chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chart {
    pub title: String,
    pub lines: Vec<ChartLine>,
    /// Lines of the widget this run cannot draw, and why.
    pub missing: Vec<String>,
}

/// The charts of `widgets`, each line bound through `bindings` to the run's series.
pub fn charts(widgets: &[GraphWidget], bindings: &[(Metric, Field)], series: &Series) -> Vec<Chart> {
    let field_of = |m: &Metric| bindings.iter().find(|(b, _)| b == m).map(|(_, f)| *f);
    let points = |field: Field| -> Vec<(f64, f64)> {
        series.samples.iter().filter_map(|s| field.value(s, series).map(|v| (s.second as f64, v))).collect()
    };
    widgets
        .iter()
        .map(|w| {
            let mut lines = Vec::new();
            let mut missing = Vec::new();
            // Hidden metrics are named for expressions.
            let hidden: Vec<(&str, Option<Field>)> = w
                .lines
                .iter()
                .filter_map(|l| match l {
                    Line::Metric { metric, id: Some(id), visible: false, .. } => Some((id.as_str(), field_of(metric))),
                    _ => None,
                })
                .collect();
            for line in &w.lines {
                match line {
                    Line::Metric { visible: false, .. } => {}
                    Line::Metric { metric, label, .. } => match field_of(metric) {
                        Some(field) => lines.push(ChartLine {
                            label: label.clone(),
                            points: points(field),
                            limit: field == Field::Provisioned,
                        }),
                        None => missing
                            .push(format!("{label} ({}/{}): not measured locally", metric.namespace, metric.name)),
                    },
                    Line::Expression { id, expression, label } => {
                        // `m/PERIOD(m)`: the per-period sum as a rate. Our periods are seconds.
                        let per_second = expression
                            .split_once("/PERIOD(")
                            .filter(|(m, rest)| rest.strip_suffix(')') == Some(*m))
                            .and_then(|(m, _)| hidden.iter().find(|(h, _)| *h == m))
                            .and_then(|(_, f)| *f);
                        match per_second {
                            Some(field) => {
                                lines.push(ChartLine { label: label.clone(), points: points(field), limit: false })
                            }
                            None => missing.push(format!("{label} ({id} = {expression}): not computed locally")),
                        }
                    }
                }
            }
            Chart { title: w.title.clone(), lines, missing }
        })
        .collect()
}

/// The consumed WCU as CloudWatch's one-minute sums, against the provisioned capacity per
/// minute, drawn as steps (each sum holds for its minute).
pub fn minute_chart(series: &Series) -> Chart {
    let minute = series.minute_secs() as f64;
    let steps = |value: &dyn Fn(u64) -> f64| -> Vec<(f64, f64)> {
        series
            .minute_sums()
            .iter()
            .flat_map(|(at, sum)| [(*at as f64, value(*sum)), (*at as f64 + minute, value(*sum))])
            .collect()
    };
    let mut lines = vec![ChartLine {
        label: "Consumed WCU per minute (sum)".to_owned(),
        points: steps(&|sum| sum as f64),
        limit: false,
    }];
    if let Some(p) = series.provisioned_wcu {
        lines.push(ChartLine {
            label: "Provisioned WCU x 60".to_owned(),
            points: steps(&|_| f64::from(p) * 60.0),
            limit: true,
        });
    }
    Chart { title: "Write capacity per minute: consumed vs provisioned".to_owned(), lines, missing: Vec::new() }
}

/// Text safe inside HTML elements and attributes (the page shows the stack's own declarations:
/// titles and labels, no data from outside).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One chart as SVG.
pub fn svg(chart: &Chart) -> Result<String, LocalError> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| LocalError::Graph(format!("{}: {e}", chart.title));
    let points = chart.lines.iter().flat_map(|l| l.points.iter());
    let x_max = points.clone().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_max = points.map(|(_, y)| *y).fold(1.0, f64::max) * 1.1;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut c = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        c.configure_mesh().x_desc("seconds").draw().map_err(|e| err(&e))?;
        let palette = [BLUE, GREEN, MAGENTA, CYAN, BLACK];
        for (i, line) in chart.lines.iter().enumerate() {
            let color = if line.limit { RED } else { palette[i % palette.len()] };
            c.draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(line.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        if !chart.lines.is_empty() {
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}

/// The HTML page: a heading, `notes` (what the run was, what it changed), each chart with its
/// title, and the series as JSON in `<script type="application/json" id="series">`.
pub fn html(heading: &str, notes: &[String], charts: &[Chart], series: &Series) -> Result<String, LocalError> {
    let mut page = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    page.push_str(&escape(heading));
    page.push_str("</title><style>body{font-family:sans-serif;max-width:760px;margin:2em auto}h2{font-size:1.1em;margin-top:2em}.missing{color:#a00}</style></head><body>\n<h1>");
    page.push_str(&escape(heading));
    page.push_str("</h1>\n");
    for n in notes {
        page.push_str(&format!("<p>{}</p>\n", escape(n)));
    }
    for chart in charts {
        page.push_str(&format!("<h2>{}</h2>\n", escape(&chart.title)));
        page.push_str(&svg(chart)?);
        page.push('\n');
        for m in &chart.missing {
            page.push_str(&format!("<p class=\"missing\">{}</p>\n", escape(m)));
        }
    }
    // `</` cannot end the script element early: JSON escapes it.
    let json = serde_json::to_string(series).map_err(|e| LocalError::Graph(e.to_string()))?.replace("</", "<\\/");
    page.push_str(&format!("<script type=\"application/json\" id=\"series\">{json}</script>\n</body></html>\n"));
    Ok(page)
}

/// Reads the series back from a page [`html`] wrote.
pub fn series_of(page: &str) -> Option<serde_json::Value> {
    let start = page.find("<script type=\"application/json\" id=\"series\">")? + 44;
    let end = start + page[start..].find("</script>")?;
    serde_json::from_str(&page[start..end].replace("<\\/", "</")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cfn::constructs::cloudwatch::Statistic;
    use cfn::template::Expr;

    fn metric(name: &'static str) -> Metric {
        Metric::new("AWS/Test", name, ("Name", Expr::lit("x")), Statistic::Sum)
    }

    fn series() -> Series {
        let samples = (0..3)
            .map(|second| Sample { second, concurrency: 1, consumed_wcu: 5 * second, ..Default::default() })
            .collect();
        Series { time_scale: 1.0, provisioned_wcu: Some(5), samples }
    }

    #[test]
    fn widget_lines_are_bound_to_the_runs_series_and_the_rest_is_named() {
        let widgets = vec![
            GraphWidget {
                title: "PublishMetrics concurrency".into(),
                lines: vec![Line::metric(metric("Conc"), "Concurrent"), Line::metric(metric("Unknown"), "Other")],
            },
            GraphWidget {
                title: "Write capacity".into(),
                lines: vec![
                    Line::hidden(metric("Consumed"), "consumed"),
                    Line::expression("perSecond", "consumed/PERIOD(consumed)", "Consumed WCU"),
                    Line::expression("odd", "consumed*2", "Doubled"),
                    Line::metric(metric("Provisioned"), "Provisioned WCU"),
                ],
            },
        ];
        let bindings = [
            (metric("Conc"), Field::Concurrency),
            (metric("Consumed"), Field::ConsumedWcu),
            (metric("Provisioned"), Field::Provisioned),
        ];
        let charts = charts(&widgets, &bindings, &series());
        assert_eq!(charts[0].title, "PublishMetrics concurrency");
        assert_eq!(charts[0].lines[0].points, [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]);
        assert_eq!(charts[0].missing, ["Other (AWS/Test/Unknown): not measured locally"]);
        let labels: Vec<&str> = charts[1].lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["Consumed WCU", "Provisioned WCU"]);
        assert_eq!(charts[1].lines[0].points[2], (2.0, 10.0));
        assert!(charts[1].lines[1].limit && charts[1].lines[1].points.iter().all(|(_, y)| *y == 5.0));
        assert_eq!(charts[1].missing, ["Doubled (odd = consumed*2): not computed locally"]);
    }

    #[test]
    fn minute_sums_are_steps_under_the_provisioned_line() {
        let samples = (0..90).map(|second| Sample { second, consumed_wcu: 5, ..Default::default() }).collect();
        let chart = minute_chart(&Series { time_scale: 1.0, provisioned_wcu: Some(5), samples });
        assert_eq!(chart.lines[0].points, [(0.0, 300.0), (60.0, 300.0), (60.0, 150.0), (120.0, 150.0)]);
        assert!(chart.lines[1].limit && chart.lines[1].points.iter().all(|(_, y)| *y == 300.0));
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_carries_its_series() {
        let chart = Chart {
            title: "Latte <script>alert(1)</script> & co".into(),
            lines: vec![ChartLine { label: "a</script>".into(), points: vec![(0.0, 1.0), (1.0, 2.0)], limit: false }],
            missing: vec!["x & y".into()],
        };
        let page = html("Run \"1\"", &["note <b>".into()], &[chart, minute_chart(&series())], &series()).unwrap();
        assert!(!page.contains("<script>alert"), "titles are escaped");
        assert!(page.contains("Latte &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(page.contains("note &lt;b&gt;") && page.contains("Run &quot;1&quot;"));
        assert!(page.contains("<p class=\"missing\">x &amp; y</p>"));
        for fetch in [" src=", "href=", "<link", "url(", "@import"] {
            assert!(!page.contains(fetch), "nothing fetched: {fetch}");
        }
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(series_of(&page).unwrap()["samples"][2]["consumedWcu"], 10);
    }
}
