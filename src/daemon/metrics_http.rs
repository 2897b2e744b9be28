//! `netnat daemon --metrics-listen ADDR:PORT`: a minimal HTTP/1.1 server for `GET /metrics`.
//!
//! Hand-written on `std::net::TcpListener` rather than a crate: one route, and the bounds
//! matter more than features (tiny_http, the usual small choice, reads each connection on a
//! thread of its own). One thread serves one connection at a time; a request may take at most
//! [`REQUEST_TIMEOUT`] to arrive and [`MAX_REQUEST`] bytes, the answer at most
//! [`WRITE_TIMEOUT`] to leave, then the connection is closed (`Connection: close`), so a slow
//! or hostile client holds the endpoint for seconds and never the packet path: rendering reads
//! the counters (atomics) and walks the table with the read locks the workers share.
//!
//! The endpoint has no authentication and its labels name internal hosts: a non-loopback
//! address is refused unless `--metrics-allow-remote` says otherwise ([`check_listen`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::metrics::Format;

/// The longest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing the answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, after answering, the client's leftover bytes are read and dropped.
const LINGER: Duration = Duration::from_millis(200);

/// Refuses a listen address off the loopback unless `allow_remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    anyhow::bail!(
        "--metrics-listen {addr} is not a loopback address: the metrics have no authentication and name internal hosts. \
         Listen on 127.0.0.1:{port} (or [::1]:{port}) and let a local Prometheus or agent scrape it, or add \
         --metrics-allow-remote to serve them on {addr} (then restrict who can reach port {port} with a firewall)",
        port = addr.port()
    )
}

/// Binds `addr` for the metrics endpoint (after [`check_listen`]).
pub fn bind(addr: SocketAddr, allow_remote: bool) -> anyhow::Result<TcpListener> {
    check_listen(addr, allow_remote)?;
    TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen for metrics on {addr}: {e}; choose another --metrics-listen ADDR:PORT")
    })
}

/// Serves `listener` forever, one connection at a time; `render` gives the text for a format.
pub fn serve(listener: TcpListener, render: impl Fn(Format) -> String) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, &render) {
                    tracing::debug!("metrics connection: {e}");
                }
            }
            // e.g. EMFILE: wait a little rather than spin.
            Err(e) => {
                tracing::warn!("metrics endpoint cannot accept a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics` (or HEAD), with the `Accept` header's format.
    Metrics { format: Format, head_only: bool },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not an HTTP request line.
    Bad,
}

fn parse(head: &str) -> Asked {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Bad;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Asked::BadMethod,
    };
    if path != "/metrics" {
        return Asked::NotFound;
    }
    let accept = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("accept").then(|| value.trim())
    });
    Asked::Metrics { format: Format::from_accept(accept), head_only }
}

/// Reads the request head within the bounds, or says why not (`None`: the client went away).
fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<String, &'static str>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err("408 Request Timeout"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Err("")),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(Err("408 Request Timeout"))
            }
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Ok(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(Err("431 Request Header Fields Too Large"));
        }
    }
}

fn answer(mut stream: TcpStream, render: &impl Fn(Format) -> String) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Ok(head) => head,
        Err("") => return Ok(()),
        Err(status) => return respond(&mut stream, status, "text/plain; charset=utf-8", status.as_bytes(), false),
    };
    match parse(&head) {
        Asked::Metrics { format, head_only } => {
            let body = render(format);
            respond(&mut stream, "200 OK", format.content_type(), body.as_bytes(), head_only)
        }
        Asked::NotFound => respond(&mut stream, "404 Not Found", "text/plain; charset=utf-8", b"try /metrics\n", false),
        Asked::BadMethod => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET /metrics\n", false)
        }
        Asked::Bad => respond(&mut stream, "400 Bad Request", "text/plain; charset=utf-8", b"GET /metrics\n", false),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()?;
    // Close our side, then read (and drop) what the client may still send, briefly: closing
    // with unread bytes would reset the connection and could lose the answer.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream.set_read_timeout(Some(LINGER))?;
    let mut sink = [0u8; 4096];
    let mut left = MAX_REQUEST * 8;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed_and_the_error_says_how() {
        assert!(check_listen("127.0.0.1:9100".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:9100".parse().unwrap(), false).is_ok());
        let e = check_listen("0.0.0.0:9100".parse().unwrap(), false).unwrap_err().to_string();
        assert!(
            e.contains("not a loopback address")
                && e.contains("127.0.0.1:9100")
                && e.contains("--metrics-allow-remote"),
            "{e}"
        );
        assert!(check_listen("203.0.113.1:9100".parse().unwrap(), false).is_err());
        assert!(check_listen("0.0.0.0:9100".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn request_heads_are_parsed() {
        let get = |h: &str| parse(h);
        assert_eq!(
            get("GET /metrics HTTP/1.1\r\nHost: x"),
            Asked::Metrics { format: Format::Prometheus, head_only: false }
        );
        assert_eq!(
            get("GET /metrics?x=1 HTTP/1.0\r\naccept: application/openmetrics-text; version=1.0.0"),
            Asked::Metrics { format: Format::OpenMetrics, head_only: false }
        );
        assert_eq!(get("HEAD /metrics HTTP/1.1"), Asked::Metrics { format: Format::Prometheus, head_only: true });
        assert_eq!(get("GET / HTTP/1.1"), Asked::NotFound);
        assert_eq!(get("POST /metrics HTTP/1.1"), Asked::BadMethod);
        assert_eq!(get("hello"), Asked::Bad);
        assert_eq!(get("GET /metrics SPDY/3"), Asked::Bad);
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// A real socket: a scrape gets the text with its length; a client that never finishes its
    /// request, or sends too much, is answered and dropped, and the next scrape still works.
    #[test]
    fn serves_scrapes_and_bounds_bad_clients() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, |f| format!("netnat_x {}\n", u8::from(f == Format::OpenMetrics))));
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4") && ok.contains("Content-Length: 11\r\n"),
            "{ok}"
        );
        assert!(ok.ends_with("\r\n\r\nnetnat_x 0\n"), "{ok}");
        let om = exchange(addr, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n");
        assert!(om.ends_with("netnat_x 1\n"), "{om}");
        assert!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let big = vec![b'a'; MAX_REQUEST + 2048];
        assert!(exchange(addr, &big).starts_with("HTTP/1.1 431"));
        // Sends half a request and waits: answered 408 after REQUEST_TIMEOUT.
        let started = Instant::now();
        let slow = exchange(addr, b"GET /metrics HTTP/1.1\r\n");
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(3));
        assert!(exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("netnat_x 0\n"));
    }
}
