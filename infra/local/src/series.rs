//! A run's per-second series: what CloudWatch would graph on the stack's dashboard, measured
//! here. Gauges (queue depths, the oldest message's age, the most executions running) are
//! sampled once a second; counts (records, throttles, write capacity) are what happened within
//! each second.

use std::time::Instant;

use serde::Serialize;

use crate::throughput::Charge;

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds since the series started.
    pub second: u64,
    /// The most PublishMetrics executions running at once (`ConcurrentExecutions`, maximum).
    pub concurrency: u32,
    /// Invocations Lambda refused for the function's concurrency (`Throttles`).
    pub throttles: u64,
    pub invocations: u64,
    /// MetricsQueue's messages waiting and in flight, and the dead-letter queue's.
    pub waiting: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
    /// Age of the oldest message not yet deleted (`ApproximateAgeOfOldestMessage`).
    pub oldest_age_secs: Option<f64>,
    /// PublishMetrics' own counts (its EMF metrics).
    pub counted: u64,
    pub duplicates: u64,
    pub bad: u64,
    pub failed: u64,
    /// Write capacity the table consumed, and what it refused (`ConsumedWriteCapacityUnits`,
    /// `WriteThrottleEvents` in WCU).
    pub consumed_wcu: u64,
    pub throttled_wcu: u64,
}

/// What a second's gauges read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    pub concurrency: u32,
    pub waiting: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
    pub oldest_age_secs: Option<f64>,
}

/// Counts since the run started, as read at a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub throttles: u64,
    pub invocations: u64,
    pub counted: u64,
    pub duplicates: u64,
    pub bad: u64,
    pub failed: u64,
}

/// The series of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// How many times faster than AWS's clock the run went: one second here is
    /// `1 / time_scale` seconds of the run's story.
    pub time_scale: f64,
    /// The table's provisioned WCU (per second of AWS's clock).
    pub provisioned_wcu: Option<u32>,
    pub samples: Vec<Sample>,
}

impl Series {
    /// The table's provisioned line in WCU per second of this series' clock.
    pub fn provisioned_per_second(&self) -> Option<f64> {
        self.provisioned_wcu.map(|w| f64::from(w) / self.time_scale)
    }

    /// How many of this series' seconds make a minute of the run's clock.
    pub fn minute_secs(&self) -> u64 {
        (60.0 * self.time_scale).max(1.0).round() as u64
    }

    /// Consumed WCU summed over CloudWatch's one-minute periods (of the run's clock), with the
    /// second each period starts at.
    pub fn minute_sums(&self) -> Vec<(u64, u64)> {
        let minute = self.minute_secs();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for s in &self.samples {
            let start = s.second / minute * minute;
            match out.last_mut() {
                Some((at, sum)) if *at == start => *sum += s.consumed_wcu,
                _ => out.push((start, s.consumed_wcu)),
            }
        }
        out
    }
}

/// Builds the series while the run goes.
pub struct Recorder {
    origin: Instant,
    samples: Vec<Sample>,
    last: Totals,
}

impl Recorder {
    /// A series whose second 0 starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Recorder { origin, samples: Vec::new(), last: Totals::default() }
    }

    fn at(&mut self, second: u64) -> &mut Sample {
        while self.samples.last().is_none_or(|s| s.second < second) {
            let next = self.samples.last().map_or(0, |s| s.second + 1);
            self.samples.push(Sample { second: next, ..Default::default() });
        }
        let i = self.samples.iter().rposition(|s| s.second == second).unwrap_or(0);
        &mut self.samples[i]
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    /// A sample taken at `at`: the gauges as read, and the counts since the last sample.
    pub fn sample(&mut self, at: Instant, gauges: Gauges, totals: Totals) {
        let last = std::mem::replace(&mut self.last, totals);
        let second = self.second(at);
        let s = self.at(second);
        s.concurrency = s.concurrency.max(gauges.concurrency);
        s.waiting = gauges.waiting;
        s.in_flight = gauges.in_flight;
        s.dead_letters = gauges.dead_letters;
        s.oldest_age_secs = gauges.oldest_age_secs;
        s.throttles += totals.throttles.saturating_sub(last.throttles);
        s.invocations += totals.invocations.saturating_sub(last.invocations);
        s.counted += totals.counted.saturating_sub(last.counted);
        s.duplicates += totals.duplicates.saturating_sub(last.duplicates);
        s.bad += totals.bad.saturating_sub(last.bad);
        s.failed += totals.failed.saturating_sub(last.failed);
    }

    /// The series, with the table's charges (times since `ledger_origin`) in their seconds.
    pub fn finish(
        mut self,
        ledger: &[Charge],
        ledger_origin: Instant,
        time_scale: f64,
        provisioned_wcu: Option<u32>,
    ) -> Series {
        for c in ledger {
            let second = self.second(ledger_origin + c.at);
            let s = self.at(second);
            if c.throttled {
                s.throttled_wcu += c.wcu;
            } else {
                s.consumed_wcu += c.wcu;
            }
        }
        Series { time_scale, provisioned_wcu, samples: self.samples }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn counts_go_to_the_second_they_happened_in_and_gauges_are_as_read() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        let gauges = |waiting| Gauges { concurrency: 1, waiting, ..Default::default() };
        r.sample(
            t0 + Duration::from_millis(1100),
            gauges(300),
            Totals { counted: 10, throttles: 4, ..Default::default() },
        );
        // A second with no sample keeps zeros; the next sample counts from the last.
        r.sample(
            t0 + Duration::from_millis(3050),
            gauges(280),
            Totals { counted: 30, throttles: 4, ..Default::default() },
        );
        let charge = |at: f64, wcu, throttled| Charge {
            at: secs(at),
            table: "t".into(),
            operation: "TransactWriteItems",
            wcu,
            throttled,
        };
        let series =
            r.finish(&[charge(1.5, 28, false), charge(1.7, 28, true), charge(3.2, 28, false)], t0, 1.0, Some(5));
        let s = &series.samples;
        assert_eq!(s.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(s.iter().map(|s| s.counted).collect::<Vec<_>>(), [0, 10, 0, 20]);
        assert_eq!(s.iter().map(|s| s.throttles).collect::<Vec<_>>(), [0, 4, 0, 0]);
        assert_eq!(s.iter().map(|s| s.waiting).collect::<Vec<_>>(), [0, 300, 0, 280]);
        assert_eq!((s[1].consumed_wcu, s[1].throttled_wcu, s[3].consumed_wcu), (28, 28, 28));
        assert_eq!(series.provisioned_per_second(), Some(5.0));
    }

    #[test]
    fn minute_sums_follow_the_runs_clock() {
        let samples = (0..130).map(|second| Sample { second, consumed_wcu: 5, ..Default::default() }).collect();
        let series = Series { time_scale: 1.0, provisioned_wcu: Some(5), samples };
        assert_eq!(series.minute_sums(), [(0, 300), (60, 300), (120, 50)]);
        // Twenty times as fast: a minute of the run is three seconds here.
        let samples = (0..7).map(|second| Sample { second, consumed_wcu: 100, ..Default::default() }).collect();
        let fast = Series { time_scale: 0.05, provisioned_wcu: Some(5), samples };
        assert_eq!(fast.minute_sums(), [(0, 300), (3, 300), (6, 100)]);
        assert_eq!(fast.provisioned_per_second(), Some(100.0));
    }
}
