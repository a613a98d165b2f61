//! The probes: TCP connect, HTTP GET expecting 2xx, exec a command in the
//! container, and a ZeroMQ REQ with an expected reply (our users' existing
//! probe sends "health"). Each returns pass/fail and a message that says
//! what was seen, within the check's timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mesh_proto::v1::health_check::Probe;
use mesh_proto::v1::{HttpProbe, ZmqProbe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeromq::{Socket, SocketRecv, SocketSend};

use crate::runtime::ContainerRuntime;

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub passed: bool,
    pub message: String,
}

fn pass(message: impl Into<String>) -> Outcome {
    Outcome {
        passed: true,
        message: message.into(),
    }
}

fn fail(message: impl Into<String>) -> Outcome {
    Outcome {
        passed: false,
        message: message.into(),
    }
}

/// Runs `probe` against the container `name` at `ip`.
pub async fn run<R: ContainerRuntime>(
    probe: &Probe,
    runtime: &R,
    name: &str,
    ip: Option<IpAddr>,
    timeout: Duration,
) -> Outcome {
    let work = async {
        match probe {
            Probe::Exec(e) => match runtime.exec(name, &e.command).await {
                Ok(0) => pass("exit 0"),
                Ok(code) => fail(format!("`{}` exited {code}", e.command.join(" "))),
                Err(err) => fail(err.to_string()),
            },
            Probe::Tcp(t) => match ip {
                None => fail("container has no IP address"),
                Some(ip) => tcp(SocketAddr::new(ip, t.port as u16)).await,
            },
            Probe::Http(h) => match ip {
                None => fail("container has no IP address"),
                Some(ip) => http(SocketAddr::new(ip, h.port as u16), h).await,
            },
            Probe::Zmq(z) => match ip {
                None => fail("container has no IP address"),
                Some(ip) => zmq(SocketAddr::new(ip, z.port as u16), z).await,
            },
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => fail(format!("no answer within {timeout:?}")),
    }
}

async fn tcp(addr: SocketAddr) -> Outcome {
    match TcpStream::connect(addr).await {
        Ok(_) => pass(format!("connected to {addr}")),
        Err(e) => fail(format!("tcp {addr}: {e}")),
    }
}

/// The status code of an HTTP/1.x status line.
pub fn status_code(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn http(addr: SocketAddr, probe: &HttpProbe) -> Outcome {
    let path = if probe.path.is_empty() {
        "/"
    } else {
        &probe.path
    };
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return fail(format!("http {addr}: {e}")),
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.ip()
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return fail(format!("http {addr}: {e}"));
    }
    let mut head = vec![0u8; 256];
    let n = match stream.read(&mut head).await {
        Ok(n) => n,
        Err(e) => return fail(format!("http {addr}: {e}")),
    };
    let text = String::from_utf8_lossy(&head[..n]);
    match status_code(&text) {
        Some(code) if (200..300).contains(&code) => pass(format!("GET {path}: {code}")),
        Some(code) => fail(format!("GET {path}: {code}")),
        None => fail(format!("GET {path}: not an HTTP response")),
    }
}

pub(crate) async fn zmq(addr: SocketAddr, probe: &ZmqProbe) -> Outcome {
    let request = if probe.request.is_empty() {
        "health"
    } else {
        &probe.request
    };
    // A fresh socket per probe: zeromq 0.7's REQ does not reconnect to a
    // peer that restarted, so a long-lived probe socket would go stale.
    let mut socket = zeromq::ReqSocket::new();
    if let Err(e) = socket.connect(&format!("tcp://{addr}")).await {
        return fail(format!("zmq tcp://{addr}: {e}"));
    }
    if let Err(e) = socket.send(request.into()).await {
        return fail(format!("zmq send: {e}"));
    }
    match socket.recv().await {
        Ok(reply) => {
            let text: String = reply
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>()
                .join("|");
            if probe.expect.is_empty() || text == probe.expect {
                pass(format!("replied {text:?}"))
            } else {
                fail(format!("replied {text:?}, expected {:?}", probe.expect))
            }
        }
        Err(e) => fail(format!("zmq recv: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_lines() {
        assert_eq!(status_code("HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code("HTTP/1.0 503 Unavailable\r\n"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }

    #[tokio::test]
    async fn real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        assert!(tcp(addr).await.passed);
        let ok = http(
            addr,
            &HttpProbe {
                port: 0,
                path: "/health".into(),
            },
        )
        .await;
        assert!(ok.passed, "{ok:?}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = tcp(closed).await;
        assert!(
            !refused.passed && refused.message.contains("refused"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn zmq_probe_against_a_rep_socket() {
        let mut rep = zeromq::RepSocket::new();
        let endpoint = rep.bind("tcp://127.0.0.1:0").await.unwrap();
        let port = match endpoint {
            zeromq::Endpoint::Tcp(_, port) => port,
            other => panic!("{other:?}"),
        };
        tokio::spawn(async move {
            for _ in 0..2 {
                let msg = rep.recv().await.unwrap();
                let answer = if msg.get(0).map(|f| f.as_ref()) == Some(b"health".as_ref()) {
                    "ok"
                } else {
                    "?"
                };
                rep.send(answer.into()).await.unwrap();
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let good = zmq(
            addr,
            &ZmqProbe {
                port: 0,
                request: "health".into(),
                expect: "ok".into(),
            },
        )
        .await;
        assert!(good.passed, "{good:?}");
        let bad = zmq(
            addr,
            &ZmqProbe {
                port: 0,
                request: "other".into(),
                expect: "ok".into(),
            },
        )
        .await;
        assert!(
            !bad.passed && bad.message.contains("expected \"ok\""),
            "{bad:?}"
        );
    }
}
