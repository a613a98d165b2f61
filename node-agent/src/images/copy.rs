//! The two ends of an image copy over the tunnel. The source ([`serve_export`]) streams
//! Podman's archive of the image and hashes what it sends; the target ([`pull`]) spools it to
//! a file under the agent's state directory while hashing it, checks the size and SHA-256
//! against the source's end frame, and only then loads the file into Podman. A cut link, a
//! stall, a full disk or a corrupted byte therefore end the copy with an error and no image
//! (the spool file is removed on every path, including a cancelled task).

use std::path::{Path, PathBuf};
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

/// The spool file of one pull, removed when dropped (also when the task is aborted).
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Free bytes on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// What a pull needs besides the image's name.
pub struct PullSpec<'a> {
    pub tunnels: &'a Tunnels,
    pub source: PeerAddr,
    pub pod: &'a Libpod,
    pub spool_dir: &'a Path,
    /// A name for the spool file, unique among pulls under way.
    pub job: u64,
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

    std::fs::create_dir_all(spec.spool_dir)
        .map_err(|e| format!("cannot create {}: {e}", spec.spool_dir.display()))?;
    let spool = Spool(spec.spool_dir.join(format!("copy-{}.tar", spec.job)));
    let mut file = tokio::fs::File::create(&spool.0)
        .await
        .map_err(|e| format!("cannot create {}: {e}", spool.0.display()))?;
    let mut hash = Context::new(&SHA256);
    let mut now = Progress {
        phase: "receiving",
        bytes: 0,
        total: 0,
    };
    let mut last_report = Instant::now();
    let stalled = || {
        format!(
            "no data from agent '{from}' for {:?}: the link dropped or the agent stopped; \
             nothing was loaded, run the copy again",
            spec.stall
        )
    };
    let (total, sha256) = loop {
        let frame = tokio::time::timeout(spec.stall, wire::read_frame(&mut recv))
            .await
            .map_err(|_| stalled())?
            .map_err(|e| {
                format!(
                    "the copy from agent '{from}' broke off: {e}; nothing was loaded, run it again"
                )
            })?;
        match frame {
            Some(Frame::Size(n)) => {
                now.total = n;
                if let Some(free) = free_bytes(spec.spool_dir) {
                    if free < n {
                        return Err(format!(
                            "not enough disk for '{image}' ({n} bytes) in {}: {free} bytes free; free some space and copy again",
                            spec.spool_dir.display()
                        ));
                    }
                }
                progress(now.clone());
            }
            Some(Frame::Data(d)) => {
                hash.update(&d);
                file.write_all(&d).await.map_err(|e| {
                    format!(
                        "cannot write {} ({e}); nothing was loaded",
                        spool.0.display()
                    )
                })?;
                now.bytes += d.len() as u64;
                if last_report.elapsed() >= Duration::from_millis(250) {
                    last_report = Instant::now();
                    progress(now.clone());
                }
            }
            Some(Frame::End { total, sha256 }) => break (total, sha256),
            Some(Frame::Failed(reason)) => return Err(format!("agent '{from}': {reason}")),
            None => {
                return Err(format!(
                    "agent '{from}' ended the copy before its end; nothing was loaded, run it again"
                ))
            }
        }
    };
    file.flush()
        .await
        .map_err(|e| format!("cannot write {} ({e})", spool.0.display()))?;
    drop(file);
    let ours = hash.finish();
    if total != now.bytes || ours.as_ref() != sha256 {
        return Err(format!(
            "the archive from agent '{from}' does not match its checksum (received {} bytes, sha256 {}; sent {total} bytes, sha256 {}): refused, nothing was loaded",
            now.bytes,
            wire::hex(ours.as_ref()),
            wire::hex(&sha256)
        ));
    }
    progress(Progress {
        phase: "loading",
        ..now.clone()
    });
    let loaded = spec
        .pod
        .load(&spool.0)
        .await
        .map_err(|e| format!("Podman did not load the image: {e}"))?;
    Ok(Pulled {
        bytes: total,
        sha256: wire::hex(&sha256),
        loaded,
        already_present: false,
    })
}
