//! Pacing: an instance spends at most its share of the table's write capacity
//! ([`WriteBudget`], from the stack), so the queue, not the table, absorbs a spike.
//!
//! A token bucket refilled at the budget, paid before each write: a transaction of `c` WCU may
//! start only once `c` units have accrued since the previous one was paid for, and unused
//! capacity is not saved up beyond the write at hand. So over any window of `w` seconds an
//! instance writes at most `budget × w` plus the one transaction it started first; with every
//! instance on its share, the table's consumption stays under its provisioned line plus one
//! transaction. A new process starts with an empty bucket, so a restarted environment cannot
//! spend what its predecessor already spent.

use std::sync::Mutex;
use std::time::Duration;

use order_events::capacity::WriteBudget;
use tokio::time::Instant;

/// The write capacity this process may still spend, shared by its invocations.
#[derive(Debug)]
pub struct Pacer {
    budget: WriteBudget,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Units accrued and not yet spent as of `updated` (never above the next write's cost once
    /// that write is paid for; negative only if a write was charged early).
    tokens: f64,
    updated: Instant,
}

impl Pacer {
    /// A pacer whose bucket starts empty now.
    pub fn new(budget: WriteBudget) -> Self {
        Pacer { budget, bucket: Mutex::new(Bucket { tokens: 0.0, updated: Instant::now() }) }
    }

    pub fn unpaced() -> Self {
        Self::new(WriteBudget::Unpaced)
    }

    pub fn budget(&self) -> WriteBudget {
        self.budget
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long from now a write costing `wcu` must wait before it may start.
    pub fn wait(&self, wcu: u64) -> Duration {
        let Some(rate) = self.budget.wcu_per_second() else { return Duration::ZERO };
        let bucket = self.bucket();
        let accrued = bucket.tokens + rate * Instant::now().duration_since(bucket.updated).as_secs_f64();
        let missing = wcu as f64 - accrued;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            // Rounded up to the next millisecond, so the write never starts a hair early.
            Duration::from_millis((missing / rate * 1000.0).ceil() as u64)
        }
    }

    /// Pays for a write costing `wcu` that starts now. What had accrued beyond its cost is not
    /// kept: no capacity is saved up for a burst.
    pub fn charge(&self, wcu: u64) {
        let Some(rate) = self.budget.wcu_per_second() else { return };
        let now = Instant::now();
        let mut bucket = self.bucket();
        let accrued = bucket.tokens + rate * now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = accrued.min(wcu as f64) - wcu as f64;
        bucket.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Pacer {
        Pacer::new(WriteBudget::per_second_milli(5000).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_write_waits_for_its_own_cost_and_each_next_one_too() {
        let p = five();
        assert_eq!(p.wait(28), Duration::from_millis(5600), "an empty bucket at the start");
        tokio::time::sleep(Duration::from_millis(5600)).await;
        assert_eq!(p.wait(28), Duration::ZERO);
        p.charge(28);
        assert_eq!(p.wait(10), Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1999)).await;
        assert_eq!(p.wait(10), Duration::from_millis(1), "not a hair early");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up_for_a_burst() {
        let p = five();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(p.wait(28), Duration::ZERO);
        p.charge(28);
        // Ten minutes idle would be 3000 WCU; only the write at hand could use it.
        assert_eq!(p.wait(28), Duration::from_millis(5600));
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_never_waits() {
        let p = Pacer::unpaced();
        p.charge(1_000_000);
        assert_eq!(p.wait(1_000_000), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fractional_budget_paces_by_thousandths() {
        let p = Pacer::new(WriteBudget::per_second_milli(1666).unwrap());
        assert_eq!(p.wait(5), Duration::from_millis(3002), "5 / 1.666 s, rounded up");
    }
}
