//! QUIC endpoint configuration from the mesh certificates, the identity checks on both sides of
//! a tunnel, and turning handshake failures into causes a person can act on.

use std::sync::Arc;
use std::time::Duration;

use mesh_certs::{Identity, MeshTls, PeerExpectation, Role};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;

use crate::error::{ConnectCause, Error, Result};
use crate::tunnel::TunnelConfig;

/// ALPN protocol of the bridge tunnel.
pub const ALPN: &[u8] = b"mesh-bridge/1";

/// Application close code: the peer's identity is not acceptable.
pub(crate) const CLOSE_REFUSED: u32 = 1;
/// Application close code: orderly shutdown.
pub(crate) const CLOSE_SHUTDOWN: u32 = 0;

/// How many streams one peer may have open at once on a tunnel. Bridges use one long-lived
/// stream per bridge, plus one per TCP connection.
const MAX_STREAMS: u32 = 4096;

/// Transport settings shared by both sides: keep-alive, idle timeout, stream limits and windows
/// large enough for 16 MiB messages to flow without stalls.
///
/// Measured and left at quinn's defaults (`bridge/bench-netns.sh`, two network namespaces):
/// the ACK-frequency extension, a 1 MiB initial congestion window, BBR and a 1452-byte initial
/// MTU changed neither round trips nor pipelined throughput beyond noise. On a LAN the tunnel
/// is bound by quinn's per-packet CPU cost, not by congestion control or acknowledgements.
/// The benchmark's raw QUIC floor (`tests/src/bin/bench_bridge/quic_streams.rs`) copies these
/// settings: change both.
fn transport(config: &TunnelConfig) -> Result<Arc<TransportConfig>> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(config.keep_alive));
    let idle =
        quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| Error::QuicConfig {
            what: "transport",
            reason: format!("idle timeout {:?}: {e}", config.idle_timeout),
        })?;
    t.max_idle_timeout(Some(idle));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    t.stream_receive_window(VarInt::from_u32(8 * 1024 * 1024));
    t.send_window(64 * 1024 * 1024);
    Ok(Arc::new(t))
}

/// The server side: any client certificate chaining to the mesh CA passes TLS; the identity
/// (an agent of our mesh) is checked right after the handshake by [`check_client`].
pub(crate) fn server_config(tls: &MeshTls, config: &TunnelConfig) -> Result<quinn::ServerConfig> {
    let rustls = tls.server_config(&[ALPN])?;
    let crypto = QuicServerConfig::try_from(rustls).map_err(|e| Error::QuicConfig {
        what: "server",
        reason: e.to_string(),
    })?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport(config)?);
    Ok(server)
}

/// The client side: the server must be an agent of our mesh (checked by the TLS verifier); its
/// name is checked after the handshake by [`check_server_name`].
pub(crate) fn client_config(tls: &MeshTls, config: &TunnelConfig) -> Result<quinn::ClientConfig> {
    let expect = PeerExpectation {
        mesh: tls.identity().mesh.clone(),
        role: Role::Agent,
    };
    let rustls = tls.client_config(expect, &[ALPN])?;
    let crypto = QuicClientConfig::try_from(rustls).map_err(|e| Error::QuicConfig {
        what: "client",
        reason: e.to_string(),
    })?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(config)?);
    Ok(client)
}

/// The identity in the peer's certificate on an established connection.
pub(crate) fn peer_identity(conn: &quinn::Connection) -> std::result::Result<Identity, String> {
    let any = conn
        .peer_identity()
        .ok_or_else(|| "the peer presented no certificate".to_string())?;
    let certs = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "the peer's certificates are of an unexpected type".to_string())?;
    mesh_certs::peer_identity(&certs).map_err(|e| e.to_string())
}

/// Server side: the client must be an agent of our own mesh.
pub(crate) fn check_client(ours: &Identity, theirs: &Identity) -> std::result::Result<(), String> {
    if theirs.mesh != ours.mesh {
        return Err(format!(
            "{theirs} belongs to mesh '{}', this is mesh '{}'",
            theirs.mesh, ours.mesh
        ));
    }
    if theirs.role != Role::Agent {
        return Err(format!(
            "{theirs} has role {}, only agents may open bridge tunnels",
            theirs.role
        ));
    }
    Ok(())
}

/// Client side: the agent we reached must be the one we asked for.
pub(crate) fn check_server_name(
    theirs: &Identity,
    expected: &str,
) -> std::result::Result<(), ConnectCause> {
    if theirs.name == expected {
        Ok(())
    } else {
        Err(ConnectCause::WrongPeer {
            found: theirs.uri(),
            expected: expected.to_string(),
        })
    }
}

/// A TLS alert number, named.
pub(crate) fn alert_name(alert: u64) -> String {
    let name = match alert {
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        48 => "unknown_ca",
        49 => "access_denied",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return format!("TLS alert {alert}"),
    };
    format!("TLS alert {name}")
}

/// Why a connection attempt failed, from the quinn error.
pub(crate) fn classify(e: &ConnectionError, after: Duration, port: u16) -> ConnectCause {
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        ConnectionError::TransportError(t) if crypto(u64::from(t.code)) => {
            ConnectCause::PeerCertificate {
                detail: if t.reason.is_empty() {
                    alert_name(u64::from(t.code) & 0xff)
                } else {
                    t.reason.clone()
                },
            }
        }
        ConnectionError::ConnectionClosed(c) if crypto(u64::from(c.error_code)) => {
            ConnectCause::RejectedByPeer {
                detail: alert_name(u64::from(c.error_code) & 0xff),
            }
        }
        ConnectionError::ApplicationClosed(a)
            if a.error_code == VarInt::from_u32(CLOSE_REFUSED) =>
        {
            ConnectCause::IdentityRefused {
                reason: String::from_utf8_lossy(&a.reason).into_owned(),
            }
        }
        ConnectionError::TimedOut => ConnectCause::Unreachable {
            after,
            port,
            transport: "UDP",
        },
        other => ConnectCause::Other(other.to_string()),
    }
}
