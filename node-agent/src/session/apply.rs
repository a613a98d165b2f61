//! What the coordinator sends that takes time to act on (a directory can
//! hold its applier for seconds while a bridge endpoint gives its port
//! back; the container manager may be busy) is applied here, in a task of
//! its own, so the session loop and its heartbeats never wait for it.
//!
//! Order is kept: a directory is applied before the desired set that came
//! after it, because a service moving onto this host needs its bridge
//! endpoint's port back before its container can publish it. Each kind
//! keeps only its latest value (state, not events): a directory or set
//! overtaken while the applier was busy is never applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mesh_proto::v1::{DesiredContainers, Directory};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::bridges::BridgeHost;
use crate::manager::Input;

/// Where directories are applied: this host's bridges (a seam, so tests
/// can apply slowly).
pub trait DirectorySink: Send + Sync + 'static {
    fn apply(&self, directory: Directory) -> impl std::future::Future<Output = ()> + Send;
}

impl DirectorySink for BridgeHost {
    async fn apply(&self, directory: Directory) {
        BridgeHost::apply(self, directory).await
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    pub directory: Option<Directory>,
    pub desired: Option<DesiredContainers>,
}

impl Pending {
    /// Takes what is due, directory first.
    pub fn take(&mut self) -> (Option<Directory>, Option<DesiredContainers>) {
        (self.directory.take(), self.desired.take())
    }
}

/// The session's side: hands over what arrived, at once.
#[derive(Clone)]
pub struct Applier {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    applied_directory: Arc<AtomicU64>,
}

impl Applier {
    /// Starts the applying task on the current runtime. `bridges` gets the
    /// directories, `manager` the desired sets (either may be absent).
    pub fn spawn<B: DirectorySink>(
        bridges: Option<Arc<B>>,
        manager: Option<mpsc::Sender<Input>>,
        shutdown: CancellationToken,
    ) -> Applier {
        let applier = Applier {
            pending: Arc::default(),
            wake: Arc::new(Notify::new()),
            applied_directory: Arc::new(AtomicU64::new(0)),
        };
        let worker = applier.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = worker.wake.notified() => {}
                }
                loop {
                    let (directory, desired) = worker.lock().take();
                    if directory.is_none() && desired.is_none() {
                        break;
                    }
                    if let Some(d) = directory {
                        let generation = d.generation;
                        if let Some(b) = &bridges {
                            b.apply(d).await;
                        }
                        worker
                            .applied_directory
                            .fetch_max(generation, Ordering::Relaxed);
                    }
                    if let Some(d) = desired {
                        match &manager {
                            Some(inputs) => {
                                if inputs.send(Input::Desired(d)).await.is_err() {
                                    return;
                                }
                            }
                            None => tracing::warn!(
                                "this agent runs no container manager; desired set ignored"
                            ),
                        }
                    }
                }
            }
        });
        applier
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn directory(&self, directory: Directory) {
        {
            let mut p = self.lock();
            // A directory overtaken before it was applied is dropped, as
            // is an older one arriving late.
            if p.directory
                .as_ref()
                .is_none_or(|d| directory.generation >= d.generation)
            {
                p.directory = Some(directory);
            }
        }
        self.wake.notify_one();
    }

    pub fn desired(&self, desired: DesiredContainers) {
        {
            let mut p = self.lock();
            if p.desired
                .as_ref()
                .is_none_or(|d| desired.generation >= d.generation)
            {
                p.desired = Some(desired);
            }
        }
        self.wake.notify_one();
    }

    /// The newest directory generation applied so far (0: none), for
    /// heartbeats: the coordinator resends a directory while this lags.
    pub fn applied_directory(&self) -> u64 {
        self.applied_directory.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(generation: u64) -> Directory {
        Directory {
            generation,
            ..Default::default()
        }
    }

    fn desired(generation: u64) -> DesiredContainers {
        DesiredContainers {
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn directory_comes_out_first_and_only_the_latest_of_each() {
        let mut p = Pending {
            desired: Some(desired(7)),
            directory: Some(directory(5)),
        };
        let (d, s) = p.take();
        assert_eq!(d.map(|d| d.generation), Some(5));
        assert_eq!(s.map(|s| s.generation), Some(7));
        assert_eq!(p, Pending::default());
    }

    /// Takes `delay` (tokio time) to apply each directory.
    struct Slow {
        delay: std::time::Duration,
        applied: Mutex<Vec<u64>>,
    }

    impl DirectorySink for Slow {
        async fn apply(&self, directory: Directory) {
            tokio::time::sleep(self.delay).await;
            self.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(directory.generation);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_directory_holds_up_neither_the_session_nor_the_set_order() {
        use std::time::Duration;
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let slow = Arc::new(Slow {
            delay: Duration::from_secs(3),
            applied: Mutex::new(vec![]),
        });
        let a = Applier::spawn(Some(slow.clone()), Some(tx), shutdown.clone());
        let t0 = tokio::time::Instant::now();
        a.directory(directory(5));
        a.desired(desired(7));
        // Handing over took no time: the session loop goes on at once.
        assert_eq!(tokio::time::Instant::now(), t0);
        // Newer ones arrive while the first directory is being applied.
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.directory(directory(6));
        a.directory(directory(8));
        a.desired(desired(9));
        let mut sets = Vec::new();
        while sets.len() < 2 {
            let Some(Input::Desired(d)) = rx.recv().await else {
                panic!("manager input closed")
            };
            // Each set reaches the manager only after the directory before it.
            let applied = slow
                .applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            sets.push((d.generation, applied));
        }
        assert_eq!(sets[0], (7, vec![5]));
        // 6 was overtaken by 8 before it was applied: never applied.
        assert_eq!(sets[1], (9, vec![5, 8]));
        assert_eq!(a.applied_directory(), 8);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn sets_reach_the_manager_in_order_and_generations_are_reported() {
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let a = Applier::spawn(None::<Arc<BridgeHost>>, Some(tx), shutdown.clone());
        a.directory(directory(3));
        a.desired(desired(10));
        // An older directory arriving late is not applied over a newer one.
        a.directory(directory(2));
        let Some(Input::Desired(d)) = rx.recv().await else {
            panic!("no desired set")
        };
        assert_eq!(d.generation, 10);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while a.applied_directory() != 3 {
            assert!(tokio::time::Instant::now() < deadline, "not applied");
            tokio::task::yield_now().await;
        }
        shutdown.cancel();
    }
}
