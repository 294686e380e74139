//! Waiting without blocking the instance.

use crate::bindings::monotonic_clock;
use std::time::Duration;

/// Waits for `duration` while the instance keeps serving its other tasks.
///
/// `std::thread::sleep` would block the whole instance (the sink and the
/// source of one connection share it), so handlers wait with this instead.
pub async fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::wait_for(nanos).await;
}
