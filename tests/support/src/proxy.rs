//! The plumbing of small HTTP stand-ins put in front of moto, for what moto lacks: read one
//! request, answer it, or relay it to moto and hand back moto's answer. One request per
//! connection (`connection: close`), which the SDK's clients accept.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 request: head and body (by Content-Length).
pub async fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

/// A header's value in a request or response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// Sends the request to `upstream` (`host:port`) and returns its whole answer: head and body.
pub async fn relay(upstream: &str, head: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut up = TcpStream::connect(upstream).await.ok()?;
    up.write_all(format!("{head}connection: close\r\n\r\n").as_bytes()).await.ok()?;
    up.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await.ok()?;
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((String::from_utf8_lossy(&answer[..end]).into_owned(), answer[end..].to_vec()))
}

/// Writes an answer: `head` (its Content-Length set to the body's) and `body`; then closes.
pub async fn respond(conn: &mut TcpStream, head: &str, body: &[u8]) {
    let head: String = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.is_empty() && !l.starts_with("content-length:") && !l.starts_with("transfer-encoding:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let _ = conn.write_all(format!("{head}content-length: {}\r\n\r\n", body.len()).as_bytes()).await;
    let _ = conn.write_all(body).await;
    let _ = conn.shutdown().await;
}
