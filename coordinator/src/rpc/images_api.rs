//! `CopyImage`: an image from one host's Podman to another's. The coordinator checks what it
//! can from the agents' reports (both hosts known, the source holds the image, the target
//! does not yet), asks the target's agent to pull it from the source's over their tunnel, and
//! relays the agent's progress to the admin; an admin who goes away cancels the copy.

use std::sync::Arc;

use mesh_proto::v1::{CopyImageRequest, ImageCopyProgress};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::info;

use crate::decide::images::holds;
use crate::state::Shared;

pub type ProgressStream = ReceiverStream<Result<ImageCopyProgress, Status>>;

/// The images a node last reported, None when its Podman was not answering.
fn held(shared: &Shared, node: &str) -> Option<Vec<mesh_proto::v1::ImageSummary>> {
    shared.registry().held_images().remove(node)
}

pub fn copy(shared: &Arc<Shared>, req: CopyImageRequest) -> Result<ProgressStream, Status> {
    let CopyImageRequest {
        image,
        from_node: from,
        to_node: to,
        stall_timeout_ms,
    } = req;
    if image.is_empty() || from.is_empty() || to.is_empty() {
        return Err(Status::invalid_argument(
            "give an image and both hosts: meshctl images copy IMAGE --from HOST --to HOST",
        ));
    }
    if from == to {
        return Err(Status::invalid_argument(format!(
            "--from and --to are both '{from}': copy between two different hosts"
        )));
    }
    for node in [&from, &to] {
        if !shared.registry().is_known(node) {
            return Err(Status::not_found(format!(
                "no node named '{node}' (see `meshctl nodes`)"
            )));
        }
    }
    if let Some(images) = held(shared, &from) {
        if !holds(&images, &image) {
            let mut names: Vec<String> = images.iter().flat_map(|i| i.names.clone()).collect();
            names.sort();
            return Err(Status::failed_precondition(format!(
                "'{from}' holds no image '{image}' (it has: {}); see `meshctl images {from}`",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    let (tx, rx) = mpsc::channel(16);
    if held(shared, &to).is_some_and(|images| holds(&images, &image)) {
        let _ = tx.try_send(Ok(ImageCopyProgress {
            phase: "done".into(),
            done: true,
            already_present: true,
            from_node: from,
            to_node: to,
            loaded: vec![image],
            ..Default::default()
        }));
        return Ok(ReceiverStream::new(rx));
    }
    let (id, mut progress) = shared
        .sessions
        .copy_image(&to, &from, &image, stall_timeout_ms)?;
    info!(%image, %from, %to, id, "image copy asked for");
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                p = progress.recv() => match p {
                    Some(mut p) => {
                        p.to_node = to.clone();
                        let last = p.done || !p.error.is_empty();
                        if last {
                            info!(%image, %from, %to, id, bytes = p.bytes, error = %p.error, "image copy ended");
                        }
                        if tx.send(Ok(p)).await.is_err() || last {
                            return;
                        }
                    }
                    None => {
                        let _ = tx
                            .send(Err(Status::unavailable(format!(
                                "node '{to}' disconnected during the copy; no image was loaded unless `meshctl images {to}` lists it; run the copy again"
                            ))))
                            .await;
                        return;
                    }
                },
            }
        }
        shared.sessions.cancel_copy(id);
    });
    Ok(ReceiverStream::new(rx))
}
