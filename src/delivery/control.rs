//! The scheduler's answers to the control socket (`ringmail queue flush|pause|resume|delete|
//! bounce|status`): each request is a plain call on this shard's [`Scheduler`].

use std::future::Future;
use std::pin::Pin;

use crate::control::{ControlHandler, ControlRequest, ShardReply};
use crate::delivery::scheduler::Scheduler;

impl ControlHandler for Scheduler {
    fn handle(&self, request: ControlRequest) -> Pin<Box<dyn Future<Output = ShardReply> + '_>> {
        let reply = match request {
            ControlRequest::Flush => ShardReply::Done {
                count: self.flush(),
            },
            ControlRequest::Pause => {
                self.pause();
                ShardReply::Done {
                    count: self.pending_recipients(),
                }
            }
            ControlRequest::Resume => {
                self.resume_delivery();
                ShardReply::Done {
                    count: self.pending_recipients(),
                }
            }
            ControlRequest::Delete(id) => match self.cancel(id, false) {
                Some(count) => ShardReply::Done { count },
                None => ShardReply::NotFound,
            },
            ControlRequest::Bounce(id) => match self.cancel(id, true) {
                Some(count) => ShardReply::Done { count },
                None => ShardReply::NotFound,
            },
            ControlRequest::Status => ShardReply::Status {
                paused: self.is_paused(),
                pending: self.pending_recipients(),
            },
        };
        Box::pin(std::future::ready(reply))
    }
}
