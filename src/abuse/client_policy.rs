//! One SMTP session's policy: the server's recipient rules (`relay::access`) plus what the
//! access rules gave this client (the right to relay) and its share of the per-IP message
//! budget, counted across all shards.

use super::IpTable;
use crate::relay::access::RcptPolicy;
use crate::smtp::{PeerInfo, RcptVerdict, RecipientPolicy, Reply, reply};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

pub struct ClientPolicy {
    pub rules: Rc<RcptPolicy>,
    /// An access rule lets this client relay.
    pub relay: bool,
    pub ip_table: Arc<IpTable>,
    /// Messages this IP may start per minute; 0: no limit.
    pub messages_per_minute: u32,
    /// Our host name, for the 421 text.
    pub hostname: String,
}

impl RecipientPolicy for ClientPolicy {
    fn check_recipient(&self, peer: &PeerInfo, address: &str) -> RcptVerdict {
        self.rules
            .check_recipient_relaying(peer, address, self.relay)
    }

    fn check_sender(&self, peer: &PeerInfo, now: SystemTime) -> Option<Reply> {
        let secs = crate::clock::unix_seconds(now);
        let ip = peer.remote.ip();
        (!self
            .ip_table
            .count_message(ip, secs, self.messages_per_minute))
        .then(|| reply::too_many_messages_from_ip(&self.hostname))
    }
}
