//! A moto server (the pinned one from the tools' venv) on 127.0.0.1, started by the test that
//! needs it and stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

pub struct Moto {
    child: Child,
    pub endpoint: String,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        let server = super::tool("moto_server");
        // Ask the OS for a free port, then hand it to moto.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}"), _log: log };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited with {status}: {}",
                    std::fs::read_to_string(moto._log.path()).unwrap_or_default()
                );
            }
            assert!(start.elapsed() < Duration::from_secs(60), "moto_server did not answer on {addr} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// SDK configuration for this server: test credentials, us-east-1.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
