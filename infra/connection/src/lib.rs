//! Where the tools and the handlers connect to AWS, and the glue every binary shares, written
//! once: the one HTTPS client ([`https_client`]), an SDK error as a user reads it
//! ([`sdk_error`]), the handlers' SDK configuration and deadline ([`lambda`]), and with the `cli`
//! feature the connection flags ([`Connection`]) and the binaries' `main` ([`run_main`]).

pub mod lambda;

#[cfg(feature = "cli")]
mod cli;

#[cfg(feature = "cli")]
pub use cli::{error_json, run_main, Connection};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The HTTPS client every SDK client here uses: rustls on ring (the SDK crates are built
/// without their own, which would bring aws-lc and its C build).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// An SDK error as a user reads it: the service's code and message; the HTTP status and body
/// when the answer could not be parsed (some local endpoints); the chain of causes otherwise
/// (timeouts, connection failures).
pub fn sdk_error<E: std::error::Error + ProvideErrorMetadata + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match e {
            SdkError::ServiceError(service) => {
                let raw = service.raw();
                let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                let body = body.trim();
                // An error page says nothing a terminal can show.
                let html =
                    body.get(..5).is_some_and(|b| b.eq_ignore_ascii_case("<!doc") || b.eq_ignore_ascii_case("<html"));
                if html {
                    format!(
                        "HTTP {} (an HTML error page: the endpoint does not implement this call?)",
                        raw.status().as_u16()
                    )
                } else {
                    format!("HTTP {}: {body}", raw.status().as_u16())
                }
            }
            other => format!("{}", aws_smithy_types::error::display::DisplayErrorContext(other)),
        },
    }
}
