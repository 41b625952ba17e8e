//! What counting costs the table, and the share of its write capacity PublishMetrics may use:
//! shared by the stack (which sizes and checks the design at synth) and the handler (which paces
//! its writes to its share).

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// Write capacity of one started KB of an item written in a transaction: a transactional write
/// costs two standard ones (DynamoDB Developer Guide, "Capacity management for transactions").
/// Every item this service writes is under 1 KB, so this is also what one item costs.
pub const TRANSACTION_ITEM_WCU: u64 = 2;

/// The most write capacity one counted order can cost: its dedupe record and two counters
/// (`TotalSales` and its drink, when no other order of the batch shares them), each under 1 KB
/// even at the longest order ID and drink name the handler accepts. `publish-metrics` checks
/// this against its own size rules.
pub const MAX_WCU_PER_ORDER: u64 = 3 * TRANSACTION_ITEM_WCU;

/// Write capacity of one transaction holding `orders` waiting orders of one day among `drinks`
/// distinct drinks: a dedupe record per order, one `TotalSales` counter, one counter per drink.
pub fn batch_wcu(orders: u64, drinks: u64) -> u64 {
    if orders == 0 {
        return 0;
    }
    TRANSACTION_ITEM_WCU * (orders + 1 + drinks.clamp(1, orders))
}

/// The longest one write may take (the DynamoDB client's operation timeout): a write starts
/// only with this much time left, plus [`ANSWER_MARGIN_SECS`].
pub const WRITE_ATTEMPT_SECS: u32 = 2;

/// Time kept after the last write for returning the batch response.
pub const ANSWER_MARGIN_SECS: u32 = 1;

/// A burst of orders the design must absorb: how many, and among how many drinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peak {
    pub orders: u32,
    pub drinks: u32,
}

impl Peak {
    /// The workshop's load test: EventsLoadTest's default count and drink mix.
    pub const LOAD_TEST: Peak =
        Peak { orders: load_test::DEFAULT_COUNT, drinks: load_test::DEFAULT_DRINKS.len() as u32 };

    /// Write capacity per order when the queue holds the peak, so every batch is full.
    pub fn wcu_per_order(&self, batch_size: u32) -> f64 {
        let batch = u64::from(batch_size.max(1));
        batch_wcu(batch, u64::from(self.drinks)) as f64 / batch as f64
    }
}

/// The workshop load test's defaults (EventsLoadTest's input when it names none).
pub mod load_test {
    pub const DEFAULT_COUNT: u32 = 500;
    pub const DEFAULT_DRINKS: [&str; 3] = ["Latte", "Cappuccino", "Espresso"];
}

/// The write capacity one PublishMetrics instance may consume per second: the table's
/// provisioned WCU divided among the instances that can run at once, in thousandths of a WCU
/// (rounded down, so the shares never add up past the table's capacity), or unpaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteBudget {
    /// No pacing: writes go as fast as DynamoDB answers (on-demand tables, or a what-if run).
    Unpaced,
    /// Thousandths of a WCU per second.
    PerSecond { milli_wcu: NonZeroU64 },
}

/// The value that turns pacing off.
pub const UNPACED: &str = "unpaced";

impl WriteBudget {
    /// `milli_wcu` thousandths of a WCU per second; zero is no budget at all (`None`).
    pub fn per_second_milli(milli_wcu: u64) -> Option<Self> {
        NonZeroU64::new(milli_wcu).map(|milli_wcu| WriteBudget::PerSecond { milli_wcu })
    }

    /// Units per second, `None` when unpaced.
    pub fn wcu_per_second(&self) -> Option<f64> {
        match self {
            WriteBudget::Unpaced => None,
            WriteBudget::PerSecond { milli_wcu } => Some(milli_wcu.get() as f64 / 1000.0),
        }
    }

    /// The same budget on a clock running `1 / time_scale` times as fast (a local run that
    /// shortens every duration by `time_scale` spends capacity as much faster), rounded down.
    pub fn scaled(self, time_scale: f64) -> Self {
        match self {
            WriteBudget::Unpaced => WriteBudget::Unpaced,
            WriteBudget::PerSecond { milli_wcu } => {
                let scaled = (milli_wcu.get() as f64 / time_scale).floor();
                Self::per_second_milli(scaled.clamp(1.0, u64::MAX as f64) as u64).unwrap_or(self)
            }
        }
    }
}

impl fmt::Display for WriteBudget {
    /// `unpaced`, or WCU per second with up to three decimals (`5`, `1.666`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteBudget::Unpaced => f.write_str(UNPACED),
            WriteBudget::PerSecond { milli_wcu } => {
                let (units, milli) = (milli_wcu.get() / 1000, milli_wcu.get() % 1000);
                if milli == 0 {
                    write!(f, "{units}")
                } else {
                    write!(f, "{units}.{}", format!("{milli:03}").trim_end_matches('0'))
                }
            }
        }
    }
}

/// Why a budget's text is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("write budget {0:?} is invalid: give WCU per second above 0 with at most three decimals (e.g. 5 or 1.666), or `{UNPACED}`")]
pub struct BadBudget(pub String);

impl FromStr for WriteBudget {
    type Err = BadBudget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadBudget(s.to_owned());
        if s == UNPACED {
            return Ok(WriteBudget::Unpaced);
        }
        let (units, fraction) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || !digits(units) || !digits(fraction) || fraction.len() > 3 || s.ends_with('.') {
            return Err(bad());
        }
        let units: u64 = units.parse().map_err(|_| bad())?;
        let milli: u64 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
        let total = units.checked_mul(1000).and_then(|u| u.checked_add(milli)).ok_or_else(bad)?;
        Self::per_second_milli(total).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_reads_back_as_written() {
        for (text, milli) in [("5", 5000), ("1.666", 1666), ("0.001", 1), ("2.5", 2500), ("40000", 40_000_000)] {
            let b: WriteBudget = text.parse().unwrap();
            assert_eq!(b, WriteBudget::per_second_milli(milli).unwrap(), "{text}");
            assert_eq!(b.to_string(), text);
        }
        assert_eq!("unpaced".parse::<WriteBudget>(), Ok(WriteBudget::Unpaced));
        assert_eq!(WriteBudget::Unpaced.to_string(), "unpaced");
        assert_eq!("2.500".parse::<WriteBudget>().unwrap().to_string(), "2.5");
    }

    #[test]
    fn malformed_budgets_are_refused_by_their_text() {
        for text in [
            "",
            "0",
            "0.000",
            "-1",
            "1.2345",
            ".5",
            "5.",
            "1e3",
            " 5",
            "5 ",
            "Unpaced",
            "NaN",
            "inf",
            "18446744073709552",
        ] {
            let err = text.parse::<WriteBudget>().unwrap_err();
            assert_eq!(err, BadBudget(text.to_owned()), "{text:?}");
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        assert_eq!(WriteBudget::per_second_milli(0), None);
    }

    #[test]
    fn a_scaled_budget_spends_as_much_faster_and_never_rounds_up() {
        let five = WriteBudget::per_second_milli(5000).unwrap();
        assert_eq!(five.scaled(0.1).to_string(), "50");
        assert_eq!(five.scaled(1.0), five);
        assert_eq!(WriteBudget::per_second_milli(1666).unwrap().scaled(3.0).to_string(), "0.555");
        assert_eq!(WriteBudget::Unpaced.scaled(0.1), WriteBudget::Unpaced);
    }

    #[test]
    fn batches_cost_a_record_per_order_and_a_counter_per_item() {
        // The workshop's batch: 10 orders, 3 drinks -> 10 + 1 + 3 items, 2 WCU each.
        assert_eq!(batch_wcu(10, 3), 28);
        assert_eq!(batch_wcu(1, 3), 6, "one order touches one drink");
        assert_eq!(batch_wcu(1, 1), MAX_WCU_PER_ORDER);
        assert_eq!(batch_wcu(0, 3), 0);
        assert_eq!(batch_wcu(4, 0), 2 * 6, "an order has a drink");
        assert!((Peak::LOAD_TEST.wcu_per_order(10) - 2.8).abs() < 1e-9);
        assert_eq!(Peak::LOAD_TEST, Peak { orders: 500, drinks: 3 });
    }
}
