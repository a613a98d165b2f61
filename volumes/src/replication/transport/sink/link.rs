//! The stream to the standby: opening it, its reader and writer tasks,
//! and what the standby's messages do to the primary.

use std::sync::Arc;

use mesh_bridge::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::{Link, Shared, State};
use crate::replication::transport::{channel_name, read_frame, write_frame};
use crate::replication::wire::Message;
use crate::replication::SourceResync;

impl Shared {
    /// A message from the standby; an error ends the session.
    fn on_message(&self, st: &mut State, m: Message) -> std::result::Result<(), String> {
        match m {
            Message::HelloAck {
                epoch, fresh_image, ..
            } => {
                st.primary.on_hello_ack(epoch).map_err(|e| e.to_string())?;
                st.resync = Some(SourceResync::new(
                    self.cfg.primary.identity.clone(),
                    fresh_image,
                ));
                Ok(())
            }
            Message::BlockSums { start, sums } => match st.resync.as_mut() {
                Some(rs) => rs
                    .on_sums(&self.image, start, &sums)
                    .map_err(|e| e.to_string()),
                None => Err("block checksums outside a resync".into()),
            },
            Message::Ack { seq, flushed } => {
                if flushed {
                    // The standby grants a lease from the send time of the
                    // newest Flush this Ack covers.
                    while st.flushes_sent.front().is_some_and(|(f, _)| *f <= seq) {
                        if let Some((_, at)) = st.flushes_sent.pop_front() {
                            st.last_grant = Some(at);
                        }
                    }
                }
                st.primary.on_ack(seq, flushed).map_err(|e| e.to_string())
            }
            Message::Refused { reason } => {
                st.last_refusal = Some(reason.to_string());
                Err(st.primary.on_refused(reason).to_string())
            }
            _ => Err("unexpected message from the standby".into()),
        }
    }

    /// Installs a new stream: a session's Hello first, then its tasks.
    fn install(self: &Arc<Self>, send: SendStream, recv: RecvStream) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let hello = match st.primary.open_session() {
            Ok(h) => h,
            Err(e) => {
                st.last_error = Some(e.to_string());
                return;
            }
        };
        st.links_opened += 1;
        let id = st.links_opened;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = write_loop(self.clone(), id, send, rx);
        self.runtime.spawn(writer);
        let reader = self.runtime.spawn(read_loop(self.clone(), id, recv));
        st.link = Some(Link {
            id,
            tx,
            reader: reader.abort_handle(),
        });
        self.send(&mut st, &hello);
        self.drive(&mut st);
        self.changed.notify_all();
    }

    /// Ends stream `id` for `reason`, unless another one replaced it.
    fn lost(&self, id: u64, reason: String) {
        let mut st = self.lock();
        if st.link.as_ref().is_some_and(|l| l.id == id) {
            self.drop_link(&mut st, reason);
            self.changed.notify_all();
        }
    }
}

pub(super) async fn connect_loop(sh: Arc<Shared>) {
    let name = channel_name(&sh.cfg.primary.identity.volume_id);
    let mut first = true;
    loop {
        loop {
            {
                let st = sh.lock();
                if st.closed || st.primary.is_fenced() {
                    return;
                }
                if st.link.is_none() {
                    break;
                }
            }
            sh.reconnect.notified().await;
        }
        if !first {
            tokio::time::sleep(sh.cfg.reconnect_delay).await;
        }
        first = false;
        let open = sh.tunnels.open_channel(&sh.peer, &name);
        match tokio::time::timeout(sh.cfg.open_timeout, open).await {
            Ok(Ok((send, recv))) => sh.install(send, recv),
            Ok(Err(e)) => sh.lock().last_error = Some(e.to_string()),
            Err(_) => {
                sh.lock().last_error = Some(format!(
                    "no replication channel to {} within {}ms",
                    sh.peer.node,
                    sh.cfg.open_timeout.as_millis()
                ));
            }
        }
    }
}

async fn write_loop(
    sh: Arc<Shared>,
    id: u64,
    mut send: SendStream,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = write_frame(&mut send, &frame, sh.cfg.write_timeout).await {
            sh.lost(id, e.to_string());
            return;
        }
    }
    let _ = send.finish().await;
}

async fn read_loop(sh: Arc<Shared>, id: u64, mut recv: RecvStream) {
    loop {
        let next = read_frame(&mut recv).await;
        let mut st = sh.lock();
        if st.link.as_ref().is_none_or(|l| l.id != id) {
            return;
        }
        let failed = match next {
            Ok(Some(m)) => sh.on_message(&mut st, m).err(),
            Ok(None) => Some("the standby closed the replication stream".into()),
            Err(e) => Some(e.to_string()),
        };
        match failed {
            Some(reason) => {
                sh.drop_link(&mut st, reason);
                sh.changed.notify_all();
                return;
            }
            None => {
                sh.drive(&mut st);
                sh.changed.notify_all();
            }
        }
    }
}
