//! The few libpod REST calls an image copy needs, streamed over Podman's unix socket with
//! hyper (the podman-api crate buffers a whole archive in memory to load it, which a 13 GB
//! image cannot afford): an image's size (or absence), its archive (`podman save`), and
//! loading a streamed archive (`podman load`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// The API version Debian 12's Podman (4.3) serves; later ones accept it too.
const API: &str = "/v4.0.0/libpod";

#[derive(Debug, thiserror::Error)]
pub enum LibpodError {
    #[error("cannot reach Podman at {socket}: {reason}; is its service running (systemctl enable --now podman.socket)?")]
    Unreachable { socket: PathBuf, reason: String },
    #[error("Podman: {0}")]
    Refused(String),
    #[error("'{0}' is not an image name Podman accepts (letters, digits and . _ - / : @ only)")]
    BadName(String),
    #[error("Podman's answer: {0}")]
    Protocol(String),
}

type Result<T> = std::result::Result<T, LibpodError>;

/// Podman's API on `socket`.
#[derive(Clone, Debug)]
pub struct Libpod {
    socket: PathBuf,
}

/// Only names that need no escaping in a URL path and that Podman could hold.
pub fn check_name(image: &str) -> Result<()> {
    let ok = !image.is_empty()
        && image.len() <= 512
        && !image.starts_with('-')
        && !image.contains("..")
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LibpodError::BadName(image.to_string()))
    }
}

impl Libpod {
    pub fn new(socket: &Path) -> Libpod {
        Libpod {
            socket: socket.to_path_buf(),
        }
    }

    async fn send<B>(&self, req: Request<B>) -> Result<Response<Incoming>>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let unreachable = |reason: String| LibpodError::Unreachable {
            socket: self.socket.clone(),
            reason,
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    fn get(path: &str) -> Result<Request<Empty<Bytes>>> {
        Request::get(format!("http://d{API}{path}"))
            .header("host", "d")
            .body(Empty::new())
            .map_err(|e| LibpodError::Protocol(e.to_string()))
    }

    /// Podman's size of `image` in bytes, None when it does not hold it.
    pub async fn image_size(&self, image: &str) -> Result<Option<u64>> {
        check_name(image)?;
        let resp = self
            .send(Self::get(&format!("/images/{image}/json"))?)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let (status, body) = body_text(resp).await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| LibpodError::Protocol(e.to_string()))?;
        Ok(Some(v["Size"].as_u64().unwrap_or(0)))
    }

    /// The archive of `image` (docker-archive, uncompressed, as `podman save`), streamed.
    pub async fn export(&self, image: &str) -> Result<Incoming> {
        check_name(image)?;
        let resp = self
            .send(Self::get(&format!(
                "/images/{image}/get?format=docker-archive&compress=false"
            ))?)
            .await?;
        if !resp.status().is_success() {
            let (status, body) = body_text(resp).await?;
            return Err(refusal(status, &body));
        }
        Ok(resp.into_body())
    }

    /// Loads the archive streamed by `chunks` (`podman load`). Podman writes the whole body to
    /// a temporary file before it reads any of it, so an archive whose stream ends with an
    /// error (a cut copy, a failed checksum) is never loaded. The names Podman gave the image.
    pub async fn load<S>(&self, chunks: S) -> Result<Vec<String>>
    where
        S: futures::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static,
    {
        use futures::StreamExt;
        let req = Request::post(format!("http://d{API}/images/load"))
            .header("host", "d")
            .header("content-type", "application/x-tar")
            .body(StreamBody::new(chunks.map(|c| c.map(Frame::data))))
            .map_err(|e| LibpodError::Protocol(e.to_string()))?;
        let (status, body) = body_text(self.send(req).await?).await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| LibpodError::Protocol(e.to_string()))?;
        Ok(v["Names"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

async fn body_text(resp: Response<Incoming>) -> Result<(StatusCode, String)> {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| LibpodError::Protocol(e.to_string()))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Podman's own words from an error answer (`{"cause": ..., "message": ...}`).
fn refusal(status: StatusCode, body: &str) -> LibpodError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    LibpodError::Refused(format!("{status}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_need_escaping_or_could_be_options_are_refused() {
        for ok in [
            "localhost/demo:latest",
            "docker.io/library/x@sha256:ab12",
            "abc123",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "x?y", "../../containers", "x#y", "a%2f"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_absent_service_is_named_with_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let pod = Libpod::new(&dir.path().join("none.sock"));
        let err = pod.image_size("x").await.unwrap_err().to_string();
        assert!(
            err.contains("none.sock") && err.contains("podman.socket"),
            "{err}"
        );
    }
}
