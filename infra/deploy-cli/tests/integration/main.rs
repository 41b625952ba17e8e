//! The deploy tools' integration tests, one test binary: one link of the SDK clients instead of
//! five, and libtest runs the modules' tests side by side on its threads (each test starts its
//! own moto server). `https_client.rs` stays a binary of its own: it sets `SSL_CERT_FILE` for
//! its whole process.

mod aws_cli_moto;
mod deploy_moto;
mod guard_moto;
mod library;
mod offline_diff;
mod redrive_moto;
