//! Capacity: a function that consumes an SQS queue and writes to a provisioned table, checked at
//! synth so the queue, not the table, absorbs a spike. The function's instances share the
//! table's write capacity ([`WritePlan`]); its timeout must hold one full batch written at its
//! share; the queue's visibility timeout must outlast the mapping's retries (checked by
//! [`EventSourceMapping`]'s builder); a declared peak must drain before the queue-age alarm and
//! the queue's retention; and a reserved concurrency below the mapping's first batches is
//! flagged, since Lambda then throttles what the mapping receives.

use std::fmt;

use super::dynamodb::{Billing, Table};
use super::lambda::{EventSourceMapping, Function, FunctionBuilder};
use super::{ConstructRef, Stack};
use crate::error::{Error, Result};

/// How a table's provisioned write capacity is shared among the instances of the function that
/// writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePlan {
    /// The table's provisioned WCU.
    pub provisioned_wcu: u32,
    /// The most instances of the writer that can run at once.
    pub instances: u32,
    /// Each instance's share, in thousandths of a WCU per second, rounded down so the shares
    /// never add up past the table's capacity.
    pub share_milli_wcu: u64,
}

/// The most instances of a function an SQS mapping can run at once: the lesser of the
/// function's reserved concurrency and the mapping's `MaximumConcurrency`; `None` when neither
/// bounds it.
pub fn max_instances(reserved: Option<u32>, max_concurrency: Option<u32>) -> Option<u32> {
    [reserved, max_concurrency].into_iter().flatten().min()
}

impl WritePlan {
    /// The plan for the function `writer` will build (its share goes into its environment, so
    /// it is planned before the function is built), run by a mapping with `max_concurrency`,
    /// writing to `table`: `None` for an on-demand table (no provisioned line to stay under). A
    /// paced writer without a bound on its concurrency is an error: its share is undefined.
    /// [`WritePlan::check`] checks the plan against the built handles.
    pub fn share(table: &Table, writer: &FunctionBuilder, max_concurrency: Option<u32>) -> Result<Option<WritePlan>> {
        let Billing::Provisioned { write, .. } = table.billing() else { return Ok(None) };
        let reserved = writer.planned_reserved_concurrency();
        let writer = writer.construct_name();
        let Some(instances) = max_instances(reserved, max_concurrency) else {
            return Err(Error::invalid(
                &writer,
                "ReservedConcurrentExecutions",
                "none",
                format!(
                    "it writes to {} ({write} WCU provisioned) and paces itself to a share of that capacity, so its concurrency must be bounded: set reserved concurrency or the mapping's MaximumConcurrency",
                    table.construct()
                ),
            ));
        };
        // Reserved concurrency 0 runs nothing: the whole capacity is the (unused) share.
        let share_milli_wcu = u64::from(write) * 1000 / u64::from(instances.max(1));
        if share_milli_wcu == 0 {
            return Err(Error::invalid(
                &writer,
                "ReservedConcurrentExecutions",
                instances,
                format!(
                    "{instances} instances sharing {write} WCU of {} leave each less than 0.001 WCU per second",
                    table.construct()
                ),
            ));
        }
        Ok(Some(WritePlan { provisioned_wcu: write, instances, share_milli_wcu }))
    }

    /// Each instance's share, in WCU per second.
    pub fn share_wcu(&self) -> f64 {
        self.share_milli_wcu as f64 / 1000.0
    }

    /// What all instances together may write per second.
    pub fn total_wcu(&self) -> f64 {
        self.share_wcu() * f64::from(self.instances.max(1))
    }

    /// Checks the plan against the built handles: the shares of the most instances `mapping`
    /// can run add up to no more than the table's provisioned capacity.
    pub fn check(&self, table: &Table, mapping: &EventSourceMapping) -> Result<()> {
        let function = mapping.function();
        let Billing::Provisioned { write, .. } = table.billing() else {
            return Err(Error::invalid(
                function.construct(),
                "WriteBudget",
                self.share_wcu(),
                format!("{} is on demand: there is no provisioned capacity to share", table.construct()),
            ));
        };
        let Some(instances) = max_instances(function.reserved_concurrency(), mapping.max_concurrency()) else {
            return Err(Error::invalid(
                function.construct(),
                "ReservedConcurrentExecutions",
                "none",
                "a paced writer's concurrency must be bounded (reserved concurrency or the mapping's MaximumConcurrency)",
            ));
        };
        let total = self.share_milli_wcu * u64::from(instances);
        if total > u64::from(write) * 1000 {
            return Err(Error::invalid(
                function.construct(),
                "WriteBudget",
                self.share_wcu(),
                format!(
                    "{instances} instances at {} WCU/s each write up to {:.3} WCU/s, more than the {write} WCU provisioned on {}",
                    self.share_wcu(),
                    total as f64 / 1000.0,
                    table.construct()
                ),
            ));
        }
        Ok(())
    }

    /// Seconds one instance needs to write a full batch of `mapping` at its share, when a
    /// message costs at most `max_wcu_per_message`.
    pub fn batch_secs(&self, mapping: &EventSourceMapping, max_wcu_per_message: u64) -> f64 {
        (u64::from(mapping.batch_size()) * max_wcu_per_message) as f64 / self.share_wcu()
    }

    /// Checks that the function's timeout holds one full batch written at its share, plus
    /// `margin_secs` to make the last write and answer.
    pub fn check_timeout(
        &self,
        mapping: &EventSourceMapping,
        max_wcu_per_message: u64,
        margin_secs: u32,
    ) -> Result<()> {
        let function = mapping.function();
        let write = self.batch_secs(mapping, max_wcu_per_message);
        let needed = write + f64::from(margin_secs);
        if f64::from(function.timeout_secs()) < needed {
            return Err(Error::invalid(
                function.construct(),
                "Timeout",
                function.timeout_secs(),
                format!(
                    "a full batch of {} messages at up to {max_wcu_per_message} WCU each takes {write:.1} s at its write budget of {} WCU/s, plus {margin_secs} s to write and answer: it needs at least {} s",
                    mapping.batch_size(),
                    self.share_wcu(),
                    needed.ceil()
                ),
            ));
        }
        Ok(())
    }

    /// Seconds to drain `messages` waiting messages of `wcu_per_message` each at the plan's
    /// total rate.
    pub fn drain_secs(&self, messages: u64, wcu_per_message: f64) -> f64 {
        messages as f64 * wcu_per_message / self.total_wcu()
    }
}

/// A declared peak drains before the queue-age alarm fires and before the queue's retention
/// deletes what waits: `alarm` names the alarm and its threshold in seconds.
pub fn check_drain(
    mapping: &EventSourceMapping,
    plan: &WritePlan,
    peak_messages: u64,
    wcu_per_message: f64,
    alarm: (&ConstructRef, f64),
) -> Result<f64> {
    let drain = plan.drain_secs(peak_messages, wcu_per_message);
    let queue = mapping.queue();
    let (alarm, threshold) = alarm;
    let limits = [
        (threshold, format!("the threshold of {alarm}")),
        (f64::from(queue.retention_secs()), format!("the retention of {}", queue.construct())),
    ];
    for (limit, what) in limits {
        if drain >= limit {
            return Err(Error::invalid(
                mapping.construct(),
                "peak",
                format!("{peak_messages} messages"),
                format!(
                    "at {wcu_per_message:.2} WCU each and {:.3} WCU/s they take {} to drain, not under {what} ({})",
                    plan.total_wcu(),
                    Duration(drain),
                    Duration(limit)
                ),
            ));
        }
    }
    Ok(drain)
}

/// A duration in seconds, shown as minutes and seconds (`4 min 40 s`, `15 min`, `12 s`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Duration(pub f64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.round() as u64;
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        match (h, m, s) {
            (0, 0, s) => write!(f, "{s} s"),
            (0, m, 0) => write!(f, "{m} min"),
            (0, m, s) => write!(f, "{m} min {s} s"),
            (h, m, _) => write!(f, "{h} h {m} min"),
        }
    }
}

/// Flags a reserved concurrency below the batches Lambda's SQS mapping starts with, when no
/// `MaximumConcurrency` holds the mapping to it: the mapping receives more batches than the
/// function may run, Lambda throttles the rest and retries them until their visibility timeout
/// ends, and they come back with their receive count up.
pub fn poller_warning(stack: &mut Stack, mapping: &EventSourceMapping) {
    let function: &Function = mapping.function();
    let Some(reserved) = function.reserved_concurrency() else { return };
    if mapping.max_concurrency().is_some() || reserved >= EventSourceMapping::SQS_INITIAL_BATCHES {
        return;
    }
    let receives = mapping.queue().dead_letter().map_or_else(
        || "and nothing moves them to a dead-letter queue".to_owned(),
        |(dlq, max)| {
            format!("and after {max} receives a message moves to {dlq} (maxReceiveCount {max} must allow for it)")
        },
    );
    stack.warn(
        mapping.construct(),
        format!(
            "{} has reserved concurrency {reserved}, below the {} concurrent batches the SQS mapping starts with, and no ScalingConfig.MaximumConcurrency holds the mapping to it: invocations beyond {reserved} are throttled, their messages come back after the visibility timeout with their receive count up, {receives}",
            function.construct(),
            EventSourceMapping::SQS_INITIAL_BATCHES
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constructs::dynamodb::Key;
    use crate::constructs::lambda::Code;
    use crate::constructs::sqs::Queue;

    struct Setup {
        stack: Stack,
        table: Table,
        writer: FunctionBuilder,
        mapping: EventSourceMapping,
    }

    fn setup(billing: Billing, reserved: Option<u32>, max_concurrency: Option<u32>, timeout: u32) -> Setup {
        let mut stack = Stack::new("s", "").unwrap();
        let table = Table::builder("T", Key::string("PK")).billing(billing).build(&mut stack).unwrap();
        let dlq = Queue::builder("D").retention_secs(1_209_600).build(&mut stack).unwrap();
        let queue = Queue::builder("Q")
            .visibility_timeout_secs(6 * timeout + 30)
            .retention_secs(345_600)
            .dead_letter_queue(&dlq, 10)
            .build(&mut stack)
            .unwrap();
        let mut f = Function::builder("Fn", Code::asset("f")).timeout_secs(timeout);
        if let Some(r) = reserved {
            f = f.reserved_concurrency(r);
        }
        let writer = f.clone();
        let function = f.build(&mut stack).unwrap();
        let mut m = EventSourceMapping::sqs("M", &queue, &function).batching_window_secs(30);
        if let Some(n) = max_concurrency {
            m = m.max_concurrency(n);
        }
        let mapping = m.build(&mut stack).unwrap();
        Setup { stack, table, writer, mapping }
    }

    const FIVE: Billing = Billing::Provisioned { read: 5, write: 5 };

    fn plan(s: &Setup) -> Result<Option<WritePlan>> {
        WritePlan::share(&s.table, &s.writer, s.mapping.max_concurrency())
    }

    #[test]
    fn the_share_divides_the_provisioned_capacity_among_the_most_instances() {
        let s = setup(FIVE, Some(1), None, 30);
        assert_eq!(plan(&s).unwrap(), Some(WritePlan { provisioned_wcu: 5, instances: 1, share_milli_wcu: 5000 }));
        // Reserved 3: 5/3 rounded down, so three shares stay under 5.
        let s = setup(FIVE, Some(3), None, 30);
        assert_eq!(plan(&s).unwrap().unwrap().share_milli_wcu, 1666);
        // The mapping's MaximumConcurrency when it is the lower bound.
        let s = setup(FIVE, Some(10), Some(2), 30);
        assert_eq!(plan(&s).unwrap().unwrap().instances, 2);
        let s = setup(FIVE, None, Some(4), 30);
        assert_eq!(plan(&s).unwrap().unwrap().share_milli_wcu, 1250);
        // On demand: nothing to share.
        assert_eq!(plan(&setup(Billing::OnDemand, None, None, 30)).unwrap(), None);
    }

    #[test]
    fn a_paced_writer_without_a_bound_on_its_concurrency_is_an_error() {
        let err = plan(&setup(FIVE, None, None, 30)).unwrap_err().to_string();
        assert!(err.starts_with("lambda::Function `Fn`: ReservedConcurrentExecutions = none is invalid"), "{err}");
        assert!(err.contains("dynamodb::Table `T` (5 WCU provisioned)"), "{err}");
        // So many instances that a share rounds to nothing.
        let one = Billing::Provisioned { read: 1, write: 1 };
        let err = plan(&setup(one, Some(1001), None, 30)).unwrap_err().to_string();
        assert!(err.contains("1001 instances sharing 1 WCU"), "{err}");
        assert_eq!(plan(&setup(one, Some(1000), None, 30)).unwrap().unwrap().share_milli_wcu, 1);
    }

    #[test]
    fn the_shares_of_every_instance_stay_within_the_provisioned_capacity() {
        let s = setup(FIVE, Some(3), None, 30);
        let fair = plan(&s).unwrap().unwrap();
        assert!(fair.check(&s.table, &s.mapping).is_ok());
        // 1.667 x 3 = 5.001: one thousandth too many.
        let over = WritePlan { share_milli_wcu: 1667, ..fair };
        let err = over.check(&s.table, &s.mapping).unwrap_err().to_string();
        assert_eq!(
            err,
            "lambda::Function `Fn`: WriteBudget = 1.667 is invalid: 3 instances at 1.667 WCU/s each write up to 5.001 WCU/s, more than the 5 WCU provisioned on dynamodb::Table `T`"
        );
        // A plan made for one instance, checked against a stack where three can run.
        let for_one = plan(&setup(FIVE, Some(1), None, 30)).unwrap().unwrap();
        assert!(for_one.check(&s.table, &s.mapping).is_err());
        let unbounded = setup(FIVE, None, None, 30);
        assert!(fair.check(&unbounded.table, &unbounded.mapping).unwrap_err().to_string().contains("must be bounded"));
        let on_demand = setup(Billing::OnDemand, Some(1), None, 30);
        assert!(fair.check(&on_demand.table, &on_demand.mapping).unwrap_err().to_string().contains("on demand"));
    }

    #[test]
    fn the_timeout_holds_one_full_batch_at_the_share() {
        // 10 messages x 6 WCU at 5 WCU/s: 12 s, plus 3 s.
        let s = setup(FIVE, Some(1), None, 15);
        let p = plan(&s).unwrap().unwrap();
        assert!(p.check_timeout(&s.mapping, 6, 3).is_ok());
        let s = setup(FIVE, Some(1), None, 14);
        let err = p.check_timeout(&s.mapping, 6, 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "lambda::Function `Fn`: Timeout = 14 is invalid: a full batch of 10 messages at up to 6 WCU each takes 12.0 s at its write budget of 5 WCU/s, plus 3 s to write and answer: it needs at least 15 s"
        );
    }

    #[test]
    fn a_peak_drains_before_the_alarm_and_the_retention() {
        let s = setup(FIVE, Some(1), None, 30);
        let p = plan(&s).unwrap().unwrap();
        let alarm = s.mapping.construct().clone();
        // 500 orders at 2.8 WCU: 1400 WCU at 5 WCU/s = 280 s.
        let drain = check_drain(&s.mapping, &p, 500, 2.8, (&alarm, 900.0)).unwrap();
        assert!((drain - 280.0).abs() < 1e-9);
        assert_eq!(Duration(drain).to_string(), "4 min 40 s");
        // 1607 orders take 899.9 s; 1608, 900.5 s: the alarm would fire while draining.
        assert!(check_drain(&s.mapping, &p, 1607, 2.8, (&alarm, 900.0)).is_ok());
        let err = check_drain(&s.mapping, &p, 1608, 2.8, (&alarm, 900.0)).unwrap_err().to_string();
        assert!(err.starts_with("lambda::EventSourceMapping `M`: peak = 1608 messages is invalid"), "{err}");
        assert!(err.contains("take 15 min to drain, not under the threshold of"), "{err}");
        // A queue that keeps messages for less time than they take to drain loses them.
        let err = check_drain(&s.mapping, &p, 700_000, 2.8, (&alarm, 1e9)).unwrap_err().to_string();
        assert!(err.contains("not under the retention of sqs::Queue `Q` (96 h 0 min)"), "{err}");
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        for (secs, text) in
            [(0.0, "0 s"), (12.4, "12 s"), (60.0, "1 min"), (278.0, "4 min 38 s"), (3661.0, "1 h 1 min")]
        {
            assert_eq!(Duration(secs).to_string(), text);
        }
    }

    #[test]
    fn reserved_concurrency_below_the_first_batches_is_flagged() {
        let mut s = setup(FIVE, Some(1), None, 30);
        poller_warning(&mut s.stack, &s.mapping);
        let w = s.stack.warnings();
        assert_eq!(w.len(), 1);
        let text = w[0].to_string();
        assert!(text.starts_with("lambda::EventSourceMapping `M`: lambda::Function `Fn` has reserved concurrency 1, below the 5 concurrent batches"), "{text}");
        assert!(text.contains("after 10 receives a message moves to sqs::Queue `D`"), "{text}");
        // At 5, with a MaximumConcurrency, or unreserved: nothing to say.
        for (reserved, max) in [(Some(5), None), (Some(1), Some(2)), (None, None)] {
            let mut s = setup(Billing::OnDemand, reserved, max, 30);
            poller_warning(&mut s.stack, &s.mapping);
            assert!(s.stack.warnings().is_empty(), "{reserved:?} {max:?}");
        }
        let mut s = setup(FIVE, Some(4), None, 30);
        poller_warning(&mut s.stack, &s.mapping);
        assert_eq!(s.stack.warnings().len(), 1);
    }
}
