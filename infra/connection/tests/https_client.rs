//! The one HTTPS client every SDK client here uses (rustls on ring, roots from the system or
//! `SSL_CERT_FILE`) completes a TLS handshake with a server whose certificate it trusts, and
//! refuses one it does not: what every call to real AWS depends on, checked locally with
//! `openssl s_server` on 127.0.0.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::SdkError;
use connection::Connection;

fn openssl(args: &[&str], dir: &Path) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?}");
}

/// A certificate authority `<name>-ca.pem` and a server certificate `<name>.pem` for
/// `localhost` that it signed (webpki refuses a CA certificate as a server's own).
fn certificate(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
        dir,
    );
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, name: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(dir.join(format!("{name}.pem")))
        .arg("-key")
        .arg(dir.join(format!("{name}.key")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, port)
}

/// S3 ListBuckets: a GET, which `s_server -www` answers (with its status page), bounded in time.
async fn call(port: u16) -> Result<(), SdkError<aws_sdk_s3::operation::list_buckets::ListBucketsError>> {
    let connection = Connection {
        // A host name, as AWS endpoints have: the certificate names it.
        endpoint_url: Some(format!("https://localhost:{port}")),
        local_credentials: true,
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let config = aws_sdk_s3::config::Builder::from(&connection.sdk_config().await)
        .force_path_style(true)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_secs(20)).build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config).list_buckets().send().await.map(|_| ())
}

#[tokio::test]
async fn the_https_client_trusts_what_the_system_trusts_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "trusted");
    certificate(dir.path(), "stranger");
    // The roots this process trusts: only the first authority (the one test in this binary).
    std::env::set_var("SSL_CERT_FILE", dir.path().join("trusted-ca.pem"));
    std::env::remove_var("SSL_CERT_DIR");

    let trusted = serve(dir.path(), "trusted");
    // s_server -www answers with an HTML page: the handshake and the request went through, and
    // only the answer is not what S3 says.
    match call(trusted.1).await {
        Err(SdkError::ResponseError(_) | SdkError::ServiceError(_)) => {}
        other => panic!("no HTTPS exchange with a trusted server: {other:?}"),
    }

    let stranger = serve(dir.path(), "stranger");
    match call(stranger.1).await {
        Err(SdkError::DispatchFailure(e)) => {
            let text = format!("{e:?}");
            assert!(text.to_lowercase().contains("certificate"), "{text}");
        }
        other => panic!("a certificate nobody trusts was accepted: {other:?}"),
    }
}
