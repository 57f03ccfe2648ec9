//! The suppression list: recipients (addresses or whole domains, for all mail or for one
//! list) that ringmail never sends to. Fed by hard bounces, one-click unsubscribes, ARF
//! complaints and `ringmail suppress`; checked by the scheduler before every delivery attempt.

mod entry;
mod list;

pub use entry::{Change, Entry, Key, Target, check_list_name};
pub use list::{ShardView, Snapshot, SuppressionList, WATCH_INTERVAL, lookup};

/// The file under the data directory.
pub fn path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("suppression")
}
