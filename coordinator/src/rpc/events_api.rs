//! `ListEvents` and `FollowEvents`: the event history, and a stream of it
//! that goes on with every new event (server side, no polling).

use mesh_proto::v1::{ListEventsRequest, MeshEvent};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::state::events::matches;
use crate::state::Shared;

pub fn list(shared: &Shared, q: &ListEventsRequest) -> Result<Vec<MeshEvent>, Status> {
    shared
        .events
        .list(q)
        .map_err(|e| Status::unavailable(format!("cannot read the event history: {e}")))
}

/// The history `q` asks for, then each new event it matches. Subscribed
/// before the history is read, so nothing falls in between (an event in
/// both is sent once, by its sequence number).
pub fn follow(
    shared: &Shared,
    q: ListEventsRequest,
) -> Result<ReceiverStream<Result<MeshEvent, Status>>, Status> {
    let mut rx = shared.events.subscribe();
    let history = list(shared, &q)?;
    let (tx, out) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut last = 0;
        for e in history {
            last = e.seq;
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        loop {
            match rx.recv().await {
                Ok(e) if e.seq > last && matches(&q, &e) => {
                    last = e.seq;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx
                        .send(Err(Status::data_loss(format!(
                            "this follower fell {n} events behind and missed them; run `meshctl events` again"
                        ))))
                        .await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(ReceiverStream::new(out))
}
