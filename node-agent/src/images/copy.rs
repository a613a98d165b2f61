//! The two ends of an image copy over the tunnel. The source ([`serve_export`]) streams
//! Podman's archive of the image and hashes what it sends; the target ([`pull`]) streams it
//! into Podman's load while hashing it, and ends the load's body cleanly only when the size
//! and SHA-256 match the source's end frame. Podman spools a load's body to a file before it
//! reads any of it, so a cut link, a stall, a corrupted byte or a cancelled task (the body
//! then ends with an error) leave no image behind; Podman removes its file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use mesh_bridge::{Channel, PeerAddr, Tunnels};
use ring::digest::{Context, SHA256};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::libpod::{check_name, Libpod};
use super::wire::{self, Frame, CHANNEL, MAX_CHUNK};

/// Fault points for the tests' controls, read from the source agent's environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportFaults {
    /// Flip one byte of the first chunk after hashing it (`MESH_FAULT_IMAGE_CORRUPT=1`).
    pub corrupt: bool,
    /// Send at most this many KiB/s (`MESH_FAULT_IMAGE_RATE_KIB`), so a test can cut a
    /// copy under way.
    pub rate_kib: Option<u64>,
}

impl ExportFaults {
    pub fn from_env() -> ExportFaults {
        ExportFaults {
            corrupt: std::env::var("MESH_FAULT_IMAGE_CORRUPT").is_ok_and(|v| v == "1"),
            rate_kib: std::env::var("MESH_FAULT_IMAGE_RATE_KIB")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|r| *r > 0),
        }
    }
}

/// Serves one image-export stream: the image the peer asked for, or why not.
pub async fn serve_export(ch: Channel, pod: Libpod, faults: ExportFaults) {
    let Channel {
        peer,
        mut send,
        mut recv,
    } = ch;
    let image = match wire::read_request(&mut recv).await {
        Ok(image) => image,
        Err(e) => {
            warn!(%peer, error = %e, "unreadable image-export request");
            let _ = wire::write_frame(&mut send, &Frame::Failed(format!("bad request: {e}"))).await;
            let _ = send.finish().await;
            return;
        }
    };
    let started = Instant::now();
    match export(&pod, &image, &mut send, faults).await {
        Ok(total) => {
            info!(%peer, %image, bytes = total, seconds = started.elapsed().as_secs_f64(), "image sent")
        }
        Err(Sent::Refused(reason)) => {
            warn!(%peer, %image, "image export refused: {reason}");
            let _ = wire::write_frame(&mut send, &Frame::Failed(reason)).await;
        }
        Err(Sent::Link(e)) => warn!(%peer, %image, error = %e, "image export cut off"),
    }
    let _ = send.finish().await;
}

enum Sent {
    /// Worth telling the peer (Podman's answer, a missing image).
    Refused(String),
    /// The stream itself failed: nothing can be told.
    Link(std::io::Error),
}

async fn export(
    pod: &Libpod,
    image: &str,
    send: &mut mesh_bridge::SendStream,
    faults: ExportFaults,
) -> Result<u64, Sent> {
    let size = pod
        .image_size(image)
        .await
        .map_err(|e| Sent::Refused(e.to_string()))?
        .ok_or_else(|| Sent::Refused(format!("this host's Podman has no image '{image}'")))?;
    wire::write_frame(send, &Frame::Size(size))
        .await
        .map_err(Sent::Link)?;
    let mut body = pod
        .export(image)
        .await
        .map_err(|e| Sent::Refused(e.to_string()))?;
    let mut hash = Context::new(&SHA256);
    let mut total = 0u64;
    let mut corrupt = faults.corrupt;
    let started = Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Sent::Refused(format!("Podman's archive broke off: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for chunk in data.chunks(MAX_CHUNK) {
            hash.update(chunk);
            total += chunk.len() as u64;
            let mut chunk = chunk.to_vec();
            if corrupt && !chunk.is_empty() {
                chunk[0] ^= 0xff;
                corrupt = false;
            }
            wire::write_frame(send, &Frame::Data(chunk))
                .await
                .map_err(Sent::Link)?;
            if let Some(rate) = faults.rate_kib {
                let due = Duration::from_secs_f64(total as f64 / (rate as f64 * 1024.0));
                tokio::time::sleep_until((started + due).into()).await;
            }
        }
    }
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(hash.finish().as_ref());
    wire::write_frame(send, &Frame::End { total, sha256 })
        .await
        .map_err(Sent::Link)?;
    send.flush().await.map_err(Sent::Link)?;
    Ok(total)
}

/// Where a pull stands, for progress reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub phase: &'static str,
    pub bytes: u64,
    pub total: u64,
}

/// A finished pull.
#[derive(Clone, Debug, PartialEq)]
pub struct Pulled {
    pub bytes: u64,
    pub sha256: String,
    pub loaded: Vec<String>,
    /// The image was here already; nothing was sent.
    pub already_present: bool,
}

/// Chunks in flight from the tunnel to Podman's load: bounds a pull's memory (at most this
/// many chunks of up to `MAX_CHUNK`).
const LOAD_QUEUE: usize = 8;

/// What a pull needs besides the image's name.
pub struct PullSpec<'a> {
    pub tunnels: &'a Tunnels,
    pub source: PeerAddr,
    pub pod: &'a Libpod,
    /// No frame from the source for this long ends the pull.
    pub stall: Duration,
}

/// Pulls `image` from the source agent into this host's Podman; `progress` hears where it
/// stands at least every 250 ms while data flows.
pub async fn pull(
    spec: PullSpec<'_>,
    image: &str,
    mut progress: impl FnMut(Progress),
) -> Result<Pulled, String> {
    check_name(image).map_err(|e| e.to_string())?;
    let from = spec.source.node.clone();
    if spec
        .pod
        .image_size(image)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(Pulled {
            bytes: 0,
            sha256: String::new(),
            loaded: vec![image.to_string()],
            already_present: true,
        });
    }
    progress(Progress {
        phase: "connecting",
        ..Default::default()
    });
    let (mut send, mut recv) =
        tokio::time::timeout(spec.stall, spec.tunnels.open_channel(&spec.source, CHANNEL))
            .await
            .map_err(|_| format!("agent '{from}' did not answer within {:?}", spec.stall))?
            .map_err(|e| e.to_string())?;
    wire::write_request(&mut send, image)
        .await
        .map_err(|e| format!("cannot ask agent '{from}' for the image: {e}"))?;

    // Podman loads while the archive arrives (it spools the body to a file of its own, and
    // reads it only once the body ends); the body ends cleanly only after the checksum matched,
    // so every failure below ends it with an error and nothing is loaded.
    let (chunks, rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(LOAD_QUEUE);
    let pod = spec.pod.clone();
    let checked = Arc::new(AtomicBool::new(false));
    let body = load_body(rx, checked.clone());
    let mut load = AbortOnDrop(tokio::spawn(async move { pod.load(body).await }));
    let received = receive(&mut recv, &from, image, spec.stall, &chunks, &mut progress).await;
    let outcome = match received {
        Ok(sum) => Ok(sum),
        Err(Received::Failed(reason)) => Err(reason),
        // Podman stopped taking the archive: its answer says why.
        Err(Received::LoadGone) => Err(match (&mut load.0).await {
            Ok(Err(e)) => format!("Podman did not load the image: {e}"),
            _ => "Podman stopped reading the archive".to_string(),
        }),
    };
    let (total, sha256) = match outcome {
        Ok(sum) => sum,
        Err(reason) => {
            let _ = chunks
                .send(Err(std::io::Error::other("copy abandoned")))
                .await;
            drop(chunks);
            return Err(reason);
        }
    };
    checked.store(true, Ordering::SeqCst);
    drop(chunks);
    let loaded = match (&mut load.0).await {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => return Err(format!("Podman did not load the image: {e}")),
        Err(e) => return Err(format!("the load into Podman failed: {e}")),
    };
    Ok(Pulled {
        bytes: total,
        sha256,
        loaded,
        already_present: false,
    })
}

/// The load's body: the chunks as they come, ending cleanly only once `checked` is set; a
/// sender dropped before that (a failure, a cancelled copy) ends it with an error instead.
fn load_body(
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    checked: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(rx), move |rx| {
        let checked = checked.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(c) => Some((c, Some(rx))),
                None if checked.load(Ordering::SeqCst) => None,
                None => Some((
                    Err(std::io::Error::other(
                        "the copy ended before its checksum was checked",
                    )),
                    None,
                )),
            }
        }
    })
}

/// A spawned load that stops (its request cut off mid-body) if the pull is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Received {
    /// Why the copy failed, for the admin.
    Failed(String),
    /// Podman's load ended before the archive did.
    LoadGone,
}

/// Reads the source's frames into the load, hashing them; returns the byte count and hex
/// SHA-256 once the end frame confirmed both.
async fn receive(
    recv: &mut mesh_bridge::RecvStream,
    from: &str,
    image: &str,
    stall: Duration,
    chunks: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    progress: &mut impl FnMut(Progress),
) -> Result<(u64, String), Received> {
    let failed = |s: String| Received::Failed(s);
    let mut hash = Context::new(&SHA256);
    let mut now = Progress {
        phase: "receiving",
        bytes: 0,
        total: 0,
    };
    let mut last_report = Instant::now();
    loop {
        let frame = tokio::time::timeout(stall, wire::read_frame(recv))
            .await
            .map_err(|_| {
                failed(format!(
                    "no data from agent '{from}' for {stall:?}: the link dropped or the agent \
                     stopped; nothing was loaded, run the copy again"
                ))
            })?
            .map_err(|e| {
                failed(format!(
                    "the copy from agent '{from}' broke off: {e}; nothing was loaded, run it again"
                ))
            })?;
        match frame {
            Some(Frame::Size(n)) => {
                now.total = n;
                progress(now.clone());
            }
            Some(Frame::Data(d)) => {
                hash.update(&d);
                now.bytes += d.len() as u64;
                if chunks.send(Ok(bytes::Bytes::from(d))).await.is_err() {
                    return Err(Received::LoadGone);
                }
                if last_report.elapsed() >= Duration::from_millis(250) {
                    last_report = Instant::now();
                    progress(now.clone());
                }
            }
            Some(Frame::End { total, sha256 }) => {
                let ours = hash.finish();
                if total != now.bytes || ours.as_ref() != sha256 {
                    return Err(failed(format!(
                        "the archive of '{image}' from agent '{from}' does not match its checksum \
                         (received {} bytes, sha256 {}; sent {total} bytes, sha256 {}): refused, \
                         nothing was loaded",
                        now.bytes,
                        wire::hex(ours.as_ref()),
                        wire::hex(&sha256)
                    )));
                }
                progress(Progress {
                    phase: "loading",
                    ..now
                });
                return Ok((total, wire::hex(&sha256)));
            }
            Some(Frame::Failed(reason)) => return Err(failed(format!("agent '{from}': {reason}"))),
            None => {
                return Err(failed(format!(
                    "agent '{from}' ended the copy before its end; nothing was loaded, run it again"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn drain(
        body: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>>,
    ) -> Vec<Result<usize, String>> {
        body.map(|c| c.map(|b| b.len()).map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn the_load_body_ends_cleanly_only_after_the_checksum_was_checked() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let checked = Arc::new(AtomicBool::new(false));
        let body = load_body(rx, checked.clone());
        tx.send(Ok(bytes::Bytes::from_static(b"abc")))
            .await
            .unwrap();
        checked.store(true, Ordering::SeqCst);
        drop(tx);
        assert_eq!(drain(body).await, vec![Ok(3)]);
    }

    #[tokio::test]
    async fn a_sender_dropped_before_the_check_ends_the_body_with_an_error() {
        // A failed or cancelled copy: Podman must see a broken body, never a short archive.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let body = load_body(rx, Arc::new(AtomicBool::new(false)));
        tx.send(Ok(bytes::Bytes::from_static(b"abc")))
            .await
            .unwrap();
        drop(tx);
        let got = drain(body).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1]
            .as_ref()
            .is_err_and(|e| e.contains("before its checksum")));
    }
}
