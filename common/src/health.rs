//! The `--healthcheck` probe each binary runs against its own running instance.
//!
//! The container images hold the binary and CA certificates only, with no shell or HTTP
//! client, so a container engine's health check asks the binary itself: started again with
//! `--healthcheck`, it sends `GET /status` to the address the running instance listens on and
//! exits 0 only on a 200. Orchestrators that probe over HTTP (Kubernetes) do not need it.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the probe waits to connect, and then for the answer: below the 5 s a container
/// engine typically allows a health check, so a hung service fails the probe rather than
/// the engine killing it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepted the connection, or the exchange broke off.
    #[error("GET /status on {addr} failed")]
    Io {
        /// The address probed.
        addr: SocketAddr,
        /// What the socket reported.
        #[source]
        source: std::io::Error,
    },
    /// The service answered, but not 200.
    #[error("GET /status on {addr} answered {status_line:?}")]
    NotHealthy {
        /// The address probed.
        addr: SocketAddr,
        /// The first line of the answer.
        status_line: String,
    },
}

/// Sends `GET /status` to the service listening on `listen` and succeeds on a 200.
///
/// A wildcard listen address (`0.0.0.0`, `::`) is probed on the loopback address of the same
/// family, which is where a probe run inside the same container reaches the service.
///
/// # Errors
/// [`ProbeError::Io`] when the connection or the exchange fails or times out,
/// [`ProbeError::NotHealthy`] when the answer is not 200.
pub fn probe_status(listen: SocketAddr) -> Result<(), ProbeError> {
    let addr = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    // HTTP/1.0 without keep-alive: the server closes the connection after the answer, so
    // reading to the end needs no parsing of the body's length.
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1);
    if status == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::NotHealthy {
            addr,
            status_line: status_line.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// Serves one connection with `answer` on a wildcard port and returns the address to probe.
    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0_u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(answer.as_bytes()).unwrap();
        });
        SocketAddr::from(([0, 0, 0, 0], port))
    }

    #[test]
    fn a_200_on_a_wildcard_listen_address_is_healthy() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        probe_status(addr).unwrap();
    }

    #[test]
    fn a_503_is_not_healthy() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = probe_status(addr).unwrap_err();
        assert!(matches!(err, ProbeError::NotHealthy { .. }), "{err:?}");
    }

    #[test]
    fn nothing_listening_is_not_healthy() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe_status(addr).unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err:?}");
    }
}
