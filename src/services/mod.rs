//! The pipeline services that `franz up` runs in-process.
//!
//! Each service is a `run` function that takes its settings and a shutdown token, finishes what it has in flight
//! when the token is cancelled, commits, and returns. Starting, supervising and stopping them is `app`'s job.

pub mod absturz;
pub mod aufbereitung;
pub mod kummerkasten;
