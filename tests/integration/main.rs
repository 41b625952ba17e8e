//! The workspace's cross-crate integration tests, one test binary: one link instead of six, and
//! libtest runs the modules' tests side by side on its threads, so the slow arm64 release build
//! overlaps the linters and the moto tests instead of running after them. libtest starts tests
//! in name order: `arm64_build` sorts first so it starts first, and `capacity_moto` (minutes of
//! paced runs, mostly asleep) second.

mod arm64_build;
mod capacity_moto;
mod cfn_lint;
mod checkov;
mod load_test_moto;
mod publish_metrics_moto;
mod templates;
