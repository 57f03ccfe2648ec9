//! The envelope of a message: who it is from and to, as given in SMTP, and how it arrived.

/// What the queue stores beside the message bytes. Addresses are stored as the client gave them
/// inside the angle brackets (no brackets, no ESMTP parameters); the null sender is `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; empty for the null sender `<>` (bounces).
    pub sender: String,
    /// Forward paths, in the order the client gave them. Index `i` is "recipient i" in the
    /// queue's per-recipient state.
    pub recipients: Vec<String>,
    /// When the message was accepted, in seconds since the Unix epoch.
    pub received_at: u64,
    /// The client asked for SMTPUTF8 (RFC 6531) on MAIL FROM.
    pub smtputf8: bool,
    /// The client declared BODY=8BITMIME (RFC 6152) or BODY=BINARYMIME.
    pub body_8bit: bool,
}
