//! taskfleet-worker: claims tasks, runs their processors, heartbeats, recovers.
pub mod processors;
