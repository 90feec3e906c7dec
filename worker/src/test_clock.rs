//! A clock for tests of real worker processes (`--test-clock-file`, with `--test-processors`
//! only): the time is read from a file the test writes (ms since the epoch), so a test moves
//! the time of several processes at once instead of waiting, as [`taskfleet::ManualClock`]
//! does within one process. Every script call acts at that instant ([`At::Ms`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};

use taskfleet::{At, Clock, Millis};

/// Reads the time from a file on each call; keeps the last good value while the file is
/// being rewritten.
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last: AtomicI64,
}

impl FileClock {
    pub fn new(path: PathBuf) -> FileClock {
        let clock = FileClock {
            path,
            last: AtomicI64::new(0),
        };
        clock.now_ms();
        clock
    }
}

impl Clock for FileClock {
    fn now_ms(&self) -> Millis {
        match std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<Millis>().ok())
        {
            Some(ms) => {
                self.last.store(ms, Ordering::SeqCst);
                ms
            }
            None => self.last.load(Ordering::SeqCst),
        }
    }

    fn at(&self) -> At {
        At::Ms(self.now_ms())
    }
}
