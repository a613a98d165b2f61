//! The sink a primary's FUSE server writes through, whose target can be
//! replaced while the volume stays attached (a standby appears, or another
//! host becomes the standby): the new target resyncs the standby from the
//! image, so nothing written before the switch is missed.

use std::io;
use std::sync::{Arc, RwLock};

use mesh_volumes::local::{LocalSink, WriteSink};

pub struct SwitchSink {
    current: RwLock<Arc<dyn WriteSink>>,
}

impl SwitchSink {
    pub fn new(first: Arc<dyn WriteSink>) -> SwitchSink {
        SwitchSink {
            current: RwLock::new(first),
        }
    }

    pub fn local() -> SwitchSink {
        SwitchSink::new(Arc::new(LocalSink))
    }

    /// Sends every later write and fsync to `next`; returns the old target.
    pub fn switch(&self, next: Arc<dyn WriteSink>) -> Arc<dyn WriteSink> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *cur, next)
    }

    fn target(&self) -> Arc<dyn WriteSink> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl WriteSink for SwitchSink {
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.target().write(offset, data)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.target().write_zeroes(offset, len)
    }

    fn fsync(&self) -> io::Result<()> {
        self.target().fsync()
    }
}

/// The target of a fenced volume: every write and fsync fails with EIO.
pub struct FencedSink;

impl WriteSink for FencedSink {
    fn write(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(5))
    }

    fn write_zeroes(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(5))
    }

    fn fsync(&self) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_volumes::local::{RecordingSink, SinkEvent};

    #[test]
    fn calls_after_a_switch_go_to_the_new_target() {
        let first = Arc::new(RecordingSink::default());
        let second = Arc::new(RecordingSink::default());
        let s = SwitchSink::new(first.clone());
        s.write(0, &[1; 10]).unwrap();
        s.switch(second.clone());
        s.write(4096, &[2; 20]).unwrap();
        s.fsync().unwrap();
        assert_eq!(
            first.events(),
            vec![SinkEvent::Write { offset: 0, len: 10 }]
        );
        assert_eq!(
            second.events(),
            vec![
                SinkEvent::Write {
                    offset: 4096,
                    len: 20
                },
                SinkEvent::Fsync
            ]
        );
    }
}
