//! The shards' answer to control requests until the scheduler implements
//! [`ControlHandler`](crate::control::ControlHandler): every request fails with a clear reason.
//! The integrator replaces `NotYetWired` in `shard::start` with the shard's scheduler and
//! deletes this file.

use crate::control::{ControlHandler, ControlRequest, ShardReply};
use std::future::Future;
use std::pin::Pin;

/// Answers every control request with "not available in this build".
pub(super) struct NotYetWired;

impl ControlHandler for NotYetWired {
    fn handle(&self, _request: ControlRequest) -> Pin<Box<dyn Future<Output = ShardReply> + '_>> {
        Box::pin(async {
            ShardReply::Failed("delivery control is not available in this build".into())
        })
    }
}
