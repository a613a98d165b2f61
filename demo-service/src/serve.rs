//! The socket loops (REP and ROUTER) and the pure pieces they share:
//! the echo protocol and the ROUTER envelope split.
//!
//! Frames are handled as `Vec<u8>`: the zeromq crate's messages are made
//! of `bytes::Bytes` but it does not re-export that crate, and the demo's
//! messages are small enough that a copy costs nothing worth a dependency.

use std::time::Duration;

use anyhow::Context;
use zeromq::{RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqError, ZmqMessage};

pub type Frames = Vec<Vec<u8>>;

/// The echo protocol of the rep and router modes: `health` -> `ok`,
/// `whoami` -> the service name, anything else comes back unchanged
/// (every frame, in order).
pub fn echo_reply(body: Frames, name: &str) -> Frames {
    match body.as_slice() {
        [only] if only.as_slice() == b"health" => vec![b"ok".to_vec()],
        [only] if only.as_slice() == b"whoami" => vec![name.as_bytes().to_vec()],
        _ => body,
    }
}

/// Splits what a ROUTER received into the routing envelope and the body.
///
/// The ROUTER puts the peer's identity first. A REQ (or anything through
/// a REQ/ROUTER proxy chain) then sends more routing frames and an empty
/// delimiter; a DEALER usually sends its body directly. As in libzmq's
/// REP, the envelope runs up to and including the first empty frame, or
/// is just the identity when there is none.
pub fn split_envelope(mut frames: Frames) -> (Frames, Frames) {
    let end = match frames.iter().skip(1).position(Vec::is_empty) {
        Some(i) => i + 2,
        None => 1.min(frames.len()),
    };
    let body = frames.split_off(end);
    (frames, body)
}

pub fn to_frames(message: ZmqMessage) -> Frames {
    message.into_vec().into_iter().map(|f| f.to_vec()).collect()
}

/// `None` for zero frames, which ZeroMQ cannot send.
pub fn to_message(frames: Frames) -> Option<ZmqMessage> {
    let mut frames = frames.into_iter();
    let mut message = ZmqMessage::from(frames.next()?);
    for frame in frames {
        message.push_back(frame.into());
    }
    Some(message)
}

/// Receive errors concern one peer (it sent garbage or went away); the
/// socket keeps serving the others. `NoMessage` would repeat at once, so
/// it gets a short pause instead of a busy loop.
async fn after_recv_error(error: &ZmqError) {
    tracing::debug!(error = %error, "receive failed; serving on");
    if matches!(error, ZmqError::NoMessage) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn bind_rep(endpoint: &str) -> anyhow::Result<RepSocket> {
    let mut socket = RepSocket::new();
    let bound = socket
        .bind(endpoint)
        .await
        .with_context(|| format!("cannot bind REP socket to {endpoint}"))?;
    tracing::info!(endpoint = %bound, "REP socket listening");
    Ok(socket)
}

pub async fn bind_router(endpoint: &str) -> anyhow::Result<RouterSocket> {
    let mut socket = RouterSocket::new();
    let bound = socket
        .bind(endpoint)
        .await
        .with_context(|| format!("cannot bind ROUTER socket to {endpoint}"))?;
    tracing::info!(endpoint = %bound, "ROUTER socket listening");
    Ok(socket)
}

/// Serves requests one at a time: REP answers each request before taking
/// the next, which is also what makes the memory mode's fsync-then-reply
/// order hold.
pub async fn serve_rep(
    mut socket: RepSocket,
    mut handle: impl FnMut(Frames) -> Frames,
) -> anyhow::Result<()> {
    loop {
        let request = match socket.recv().await {
            Ok(message) => to_frames(message),
            Err(e) => {
                after_recv_error(&e).await;
                continue;
            }
        };
        let Some(reply) = to_message(handle(request)) else {
            // The crate's REP can hand over a request with no body frames
            // (a DEALER that sent only an envelope); there is nothing to echo.
            tracing::debug!("empty request; no reply");
            continue;
        };
        if let Err(e) = socket.send(reply).await {
            tracing::debug!(error = %e, "reply not delivered (client gone)");
        }
    }
}

/// Serves many REQ and DEALER clients at once over one ROUTER; replies go
/// back under the envelope they came with.
pub async fn serve_router(mut socket: RouterSocket, name: &str) -> anyhow::Result<()> {
    loop {
        let request = match socket.recv().await {
            Ok(message) => to_frames(message),
            Err(e) => {
                after_recv_error(&e).await;
                continue;
            }
        };
        let (mut envelope, body) = split_envelope(request);
        envelope.extend(echo_reply(body, name));
        // Identity alone is a bare DEALER message with no frames; ZeroMQ
        // cannot deliver an empty message, so there is no reply.
        if envelope.len() < 2 {
            continue;
        }
        let Some(reply) = to_message(envelope) else {
            continue;
        };
        if let Err(e) = socket.send(reply).await {
            tracing::debug!(error = %e, "reply not delivered (client gone)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(parts: &[&str]) -> Frames {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn echo_answers_health_and_whoami_and_echoes_the_rest() {
        assert_eq!(echo_reply(f(&["health"]), "n"), f(&["ok"]));
        assert_eq!(echo_reply(f(&["whoami"]), "memory-a"), f(&["memory-a"]));
        assert_eq!(echo_reply(f(&["health", "x"]), "n"), f(&["health", "x"]));
        assert_eq!(echo_reply(f(&["a", "", "c"]), "n"), f(&["a", "", "c"]));
    }

    #[test]
    fn envelopes_of_req_dealer_and_proxied_clients() {
        // REQ: identity, delimiter, body.
        assert_eq!(
            split_envelope(f(&["id", "", "health"])),
            (f(&["id", ""]), f(&["health"]))
        );
        // DEALER without a delimiter.
        assert_eq!(
            split_envelope(f(&["id", "a", "b"])),
            (f(&["id"]), f(&["a", "b"]))
        );
        // REQ behind a proxy: two routing frames.
        assert_eq!(
            split_envelope(f(&["id", "hop", "", "x"])),
            (f(&["id", "hop", ""]), f(&["x"]))
        );
        // An empty identity frame is still the identity, not a delimiter.
        assert_eq!(split_envelope(f(&["", "x"])), (f(&[""]), f(&["x"])));
        assert_eq!(split_envelope(Vec::new()), (Vec::new(), Vec::new()));
    }

    #[test]
    fn messages_convert_both_ways() {
        let frames = f(&["a", "", "c"]);
        let message = to_message(frames.clone()).unwrap();
        assert_eq!(message.len(), 3);
        assert_eq!(to_frames(message), frames);
        assert!(to_message(Vec::new()).is_none());
    }
}
