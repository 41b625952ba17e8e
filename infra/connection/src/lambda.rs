//! What both handlers need from their environment on Lambda.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The SDK configuration on Lambda: region and credentials from the environment, HTTPS from
/// [`https_client`](crate::https_client).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(crate::https_client()).load().await
}

/// Time from `now` to the invocation's deadline (`Context::deadline`, milliseconds since the
/// epoch); zero when it has passed, or when the clock reads before the epoch.
pub fn time_left(deadline_ms: u64, now: SystemTime) -> Duration {
    let now_ms = now.duration_since(UNIX_EPOCH).map_or(u128::MAX, |d| d.as_millis());
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_counts_down_to_zero_and_never_below() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(time_left(10_000, at(4_000)), Duration::from_secs(6));
        assert_eq!(time_left(10_000, at(10_000)), Duration::ZERO);
        assert_eq!(time_left(10_000, at(12_000)), Duration::ZERO, "a deadline past leaves no time");
        assert_eq!(time_left(10_000, UNIX_EPOCH - Duration::from_secs(1)), Duration::ZERO, "a clock before 1970");
        assert_eq!(time_left(u64::MAX, at(0)), Duration::from_millis(u64::MAX));
    }
}
