//! The dedupe window: how old an event may be and still be counted, and how long the record of a
//! counted order lives, derived from the paths by which a message can reach PublishMetrics again.
//!
//! An order is counted once because its dedupe record exists when it comes back. Records expire
//! (the table's TTL), so every path by which an event can come back must end inside the record's
//! life, or the event must be refused. The paths a stack allows:
//!
//! - EventBridge retries delivery to the queue for up to the rule target's maximum event age
//!   (at most 24 hours: EventBridge User Guide, "Retrying events in EventBridge");
//! - the queue keeps a message for its retention (at most 14 days); after `maxReceiveCount`
//!   receives it moves to the dead-letter queue, which keeps it until the *original* enqueue
//!   time plus the DLQ's retention (SQS Developer Guide, "Using dead-letter queues in Amazon
//!   SQS": a standard queue keeps the enqueue timestamp on the move); events EventBridge could
//!   not deliver enter the DLQ at most the maximum event age after they happened;
//! - a redrive (a message move task) or an EventBridge archive replay sends a message again with
//!   a new enqueue time, as often as an operator runs one: no retention bounds it.
//!
//! So the bound is on the event's age, not on the queues: an event older than
//! [`MAX_EVENT_AGE_SECS`] is a bad record (to the DLQ, counted in `BadRecords`, alarmed), and
//! the stack checks at synth that every path without an operator ([`Delivery::longest_secs`])
//! fits inside it with a day to redrive. The dedupe record outlives every event it can meet
//! ([`DEDUPE_TTL_SECS`]). Counting older events is a deliberate backfill, never the default.

use crate::MAX_CLOCK_SKEW_SECS;

pub const DAY_SECS: u32 = 86_400;

/// Time left to an operator to redrive the oldest dead letter before it is too old to count.
pub const REDRIVE_ALLOWANCE_SECS: u32 = DAY_SECS;

/// The oldest an event may be (its `time` against the handler's clock) and still be counted.
pub const MAX_EVENT_AGE_SECS: u32 = 16 * DAY_SECS;

/// How long a dedupe record lives after the count it records. An event counted at `c` had
/// `time <= c + MAX_CLOCK_SKEW_SECS` (the future check), and any later delivery at `r` is
/// counted only if `r - time <= MAX_EVENT_AGE_SECS`, so `r <= c + MAX_CLOCK_SKEW_SECS +
/// MAX_EVENT_AGE_SECS`: the record must live at least that long (DynamoDB deletes an expired
/// item only after its TTL, never before). A day more covers the clocks of different handlers.
pub const DEDUPE_TTL_SECS: u32 = MAX_EVENT_AGE_SECS + MAX_CLOCK_SKEW_SECS as u32 + DAY_SECS;

/// The delivery settings of a stack that decide how late a message can arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The rule target's `MaximumEventAgeInSeconds`: how long EventBridge retries.
    pub bus_retry_secs: u32,
    /// The metrics queue's `MessageRetentionPeriod`.
    pub queue_retention_secs: u32,
    /// The dead-letter queue's `MessageRetentionPeriod`.
    pub dead_letter_retention_secs: u32,
}

/// A stack whose delivery paths outlast the dedupe window.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a message can reach PublishMetrics {longest_secs} s after its event (EventBridge's retries {bus} s + the \
     longest retention {retention} s + {REDRIVE_ALLOWANCE_SECS} s to redrive), more than the {MAX_EVENT_AGE_SECS} s \
     the handler counts (order_events::window::MAX_EVENT_AGE_SECS): shorten a retention or the rule's retries, or \
     widen the window with the dedupe TTL"
)]
pub struct TooLate {
    pub longest_secs: u64,
    pub bus: u32,
    pub retention: u32,
}

impl Delivery {
    /// The oldest an event can be when it is last delivered without an operator, plus the time
    /// left to redrive it: EventBridge's retries, then the longer of the two retentions (a dead
    /// letter expires by its first enqueue time, so the queue's time counts against the DLQ's).
    pub fn longest_secs(&self) -> u64 {
        u64::from(self.bus_retry_secs)
            + u64::from(self.queue_retention_secs.max(self.dead_letter_retention_secs))
            + u64::from(REDRIVE_ALLOWANCE_SECS)
    }

    /// Whether every path fits the window.
    pub fn check(&self) -> Result<(), TooLate> {
        let longest_secs = self.longest_secs();
        if longest_secs > u64::from(MAX_EVENT_AGE_SECS) {
            return Err(TooLate {
                longest_secs,
                bus: self.bus_retry_secs,
                retention: self.queue_retention_secs.max(self.dead_letter_retention_secs),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_MAX_RETENTION: u32 = 14 * DAY_SECS;

    #[test]
    fn the_ttl_outlives_the_latest_delivery_of_any_counted_event() {
        // Counted at 0, dated as far ahead as accepted, delivered again as late as accepted.
        let latest_delivery = MAX_CLOCK_SKEW_SECS + i64::from(MAX_EVENT_AGE_SECS);
        assert!(i64::from(DEDUPE_TTL_SECS) > latest_delivery);
    }

    #[test]
    fn eventbridges_and_sqs_longest_settings_fit_exactly() {
        // AWS's maxima: 24 h of EventBridge retries, 14 days in SQS.
        let longest = Delivery {
            bus_retry_secs: DAY_SECS,
            queue_retention_secs: AWS_MAX_RETENTION,
            dead_letter_retention_secs: AWS_MAX_RETENTION,
        };
        assert_eq!(longest.longest_secs(), u64::from(MAX_EVENT_AGE_SECS));
        assert_eq!(longest.check(), Ok(()));
    }

    #[test]
    fn a_path_one_second_past_the_window_is_refused() {
        let within = Delivery {
            bus_retry_secs: DAY_SECS,
            queue_retention_secs: 4 * DAY_SECS,
            dead_letter_retention_secs: AWS_MAX_RETENTION,
        };
        assert_eq!(within.check(), Ok(()));
        // Were the window a second shorter, the same settings would not fit.
        assert_eq!(within.longest_secs(), u64::from(MAX_EVENT_AGE_SECS));
        let slower = Delivery { bus_retry_secs: DAY_SECS + 1, ..within };
        let err = slower.check().unwrap_err();
        assert_eq!(err.longest_secs, u64::from(MAX_EVENT_AGE_SECS) + 1);
        assert!(err.to_string().contains("1382401 s after its event"), "{err}");
    }

    #[test]
    fn the_queues_retention_counts_when_it_is_the_longer() {
        let d = Delivery { bus_retry_secs: 60, queue_retention_secs: 10 * DAY_SECS, dead_letter_retention_secs: 60 };
        assert_eq!(d.longest_secs(), 60 + 10 * 86_400 + 86_400);
    }
}
