//! TLS 1.3 channels and listeners for gRPC, built from rustls configs that
//! `mesh-certs` makes. Identity checks live in those configs (client side)
//! and in the coordinator's per-RPC checks (server side).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// ALPN for gRPC over TLS.
pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "invalid coordinator address '{address}': {reason}; use HOST:PORT, e.g. 10.0.0.1:7443"
    )]
    BadAddress { address: String, reason: String },
    #[error("cannot connect to coordinator at {address}: {reason}")]
    Connect { address: String, reason: String },
}

/// Client-side connection settings.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    /// HTTP/2 pings detect a peer that vanished without closing (a cut link).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(4),
        }
    }
}

/// Opens a gRPC channel to `address` (HOST:PORT) over mutual TLS.
///
/// The TLS server name is only used for SNI; the server is authenticated by
/// its mesh identity in `tls` (see `mesh_certs::MeshTls::client_config`).
pub async fn connect(
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    options: &ConnectOptions,
) -> Result<Channel, TransportError> {
    let (host, _port) = split_host_port(address)?;
    let server_name =
        ServerName::try_from(host.to_string()).map_err(|e| TransportError::BadAddress {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| TransportError::BadAddress {
            address: address.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let connector = TlsConnector::from(tls);
    let target = address.to_string();
    let service = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(service)
        .await
        .map_err(|e| TransportError::Connect {
            address: address.to_string(),
            reason: error_chain(&e),
        })
}

fn split_host_port(address: &str) -> Result<(&str, u16), TransportError> {
    let bad = |reason: &str| TransportError::BadAddress {
        address: address.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host, port))
}

/// A refused TLS handshake, as the accept loop saw it.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub peer: SocketAddr,
    pub reason: String,
}

pub use mesh_certs::HandshakeLimits;

/// Accepts TCP connections and completes TLS handshakes concurrently, so a
/// slow or hostile client cannot stall the others. Refused handshakes are
/// reported through `on_refused` and never reach the gRPC server.
/// Handshakes are bounded by [`HandshakeLimits::default`].
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    on_refused: impl Fn(Refusal) + Send + Sync + 'static,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    tls_incoming_limited(
        listener,
        config,
        handshake_timeout,
        HandshakeLimits::default(),
        on_refused,
    )
}

/// [`tls_incoming`] with explicit handshake limits.
pub fn tls_incoming_limited(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    limits: HandshakeLimits,
    on_refused: impl Fn(Refusal) + Send + Sync + 'static,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    let slots = mesh_certs::HandshakeSlots::new(limits);
    let acceptor = TlsAcceptor::from(config);
    let on_refused = Arc::new(on_refused);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let slot = match slots.take(peer.ip()) {
                Ok(slot) => slot,
                Err(hit) => {
                    drop(tcp);
                    on_refused(Refusal {
                        peer,
                        reason: format!(
                            "{}: {} TLS handshakes under way ({} from one address at most)",
                            hit.label(),
                            limits.global,
                            limits.per_peer
                        ),
                    });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let on_refused = on_refused.clone();
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                drop(slot);
                match outcome {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => on_refused(Refusal {
                        peer,
                        reason: error_chain(&e),
                    }),
                    Err(_) => on_refused(Refusal {
                        peer,
                        reason: format!("TLS handshake not finished within {handshake_timeout:?}"),
                    }),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A hint for the operator, from the text of a connection or call error:
/// the TLS alert or OS error buried in it says what to fix.
pub fn explain(error: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        ("CertificateRevoked", "this certificate was revoked (its node removed with `meshctl nodes remove`, or `meshctl certs revoke`): join again with a new token (`meshctl token create`, then `mesh-agent join`)"),
        ("is revoked", "this certificate was revoked (its node removed with `meshctl nodes remove`, or `meshctl certs revoke`): join again with a new token (`meshctl token create`, then `mesh-agent join`)"),
        ("CertificateRequired", "the coordinator wants a client certificate and got none: pass --certs-dir or --cert/--key"),
        ("UnknownCA", "the coordinator does not trust our certificate: it was issued by another CA; issue one from this mesh's CA with `meshctl certs issue`"),
        ("CertificateExpired", "a certificate has expired: an agent rejoins with a new token (`meshctl token create`, `mesh-agent join`); or reissue it with `meshctl certs issue ... --force`"),
        ("BadCertificate", "the coordinator rejected our certificate: check that it was issued by this mesh's CA and is still valid"),
        ("UnknownIssuer", "the server's certificate was not issued by our mesh CA: check --ca, or that this is the right coordinator"),
        ("belongs to mesh", "the server is a coordinator of another mesh: check the coordinator address and the CA"),
        ("expected coordinator", "the server's certificate is not a coordinator certificate: check the address"),
        ("Expired", "a certificate has expired: reissue it with `meshctl certs issue ... --force`"),
        ("NotValidYet", "a certificate is not valid yet: check the clocks of both machines"),
        ("PermissionDenied", "the certificate is valid but its role or name does not allow this call"),
        ("Connection refused", "nothing listens at that address: is the coordinator running, and is the port right?"),
        ("No route to host", "the host is unreachable: check the network link and address"),
        ("Network is unreachable", "the network is unreachable from here: check the link and routes"),
        ("timed out", "no answer in time: check the address, the link and any firewall (TCP port 7443 by default)"),
        ("deadline has elapsed", "no answer in time: check the address, the link and any firewall (TCP port 7443 by default)"),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| error.contains(needle))
        .map(|(_, hint)| *hint)
}

/// An error and all its sources on one line: tonic and hyper wrap the TLS
/// alert that says what was wrong several layers deep.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_fix() {
        assert!(explain("received fatal alert: UnknownCA")
            .unwrap()
            .contains("another CA"));
        assert!(
            explain("tcp connect error: Connection refused (os error 111)")
                .unwrap()
                .contains("coordinator running")
        );
        assert_eq!(explain("something else"), None);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            split_host_port("10.0.0.1:7443").unwrap(),
            ("10.0.0.1", 7443)
        );
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1", 7443));
        assert_eq!(split_host_port("mainpc:1").unwrap(), ("mainpc", 1));
        assert!(split_host_port("mainpc").is_err());
        assert!(split_host_port(":7443").is_err());
        assert!(split_host_port("mainpc:http").is_err());
    }
}
