//! One record as laid out on disk, and its payloads (message, moved message, recipient
//! state); no I/O.
//!
//! ```text
//! offset size field
//!      0    4 magic "RMQ1" (little-endian u32 0x3151_4d52)
//!      4    4 CRC32C of bytes 8..40 and the payload
//!      8    4 payload length
//!     12    1 kind (1 = message, 2 = recipient state, 3 = moved message)
//!     13    3 zero
//!     16    8 segment id      (a recycled file's old records carry another id: rejected)
//!     24    8 sequence        (0, 1, 2, ... within one file; recovery wants exactly the next)
//!     32    8 generation      (the queue open that wrote it; never decreases within a file)
//!     40    n payload
//! ```
//! The generation guards the one case the id cannot: after recovery cut a file at a torn
//! record, new appends overwrite the garbage, and an old but intact record of the same segment
//! beyond them could otherwise look like the next one.
//!
//! A moved message (kind 3, written by compaction) is a message record with a prefix: the id
//! of the copy it replaces and the recipient states it carries over (see `encode_moved`).
//! Kind 3 was added after kinds 1 and 2; files without it read exactly as before. (The reverse
//! does not hold: a binary from before kind 3 would cut a log at its first moved record.)

use crate::envelope::Envelope;

use super::RecipientState;

/// Marks the start of a record.
pub const MAGIC: u32 = u32::from_le_bytes(*b"RMQ1");
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// Largest payload the length field can describe.
pub const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// What a record holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An envelope and the message bytes; lives in a segment's `.log` file.
    Message = 1,
    /// One recipient's new state; lives in a segment's `.state` file.
    State = 2,
    /// A message moved forward by compaction: the copy it replaces, the recipient states it
    /// carries, then a `Message` payload; lives in a segment's `.log` file.
    Moved = 3,
}

/// A decoded record header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the payload is.
    pub kind: Kind,
    /// The segment the record was written for.
    pub segment: u64,
    /// Position in its file's record stream.
    pub seq: u64,
    /// The queue open that wrote it.
    pub generation: u64,
    /// Payload length.
    pub len: u32,
}

/// Why bytes are not a valid record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the header's length promise (a torn tail).
    Truncated,
    /// The first four bytes are not the magic (preallocated zeros, or garbage).
    BadMagic,
    /// Unknown kind byte or nonzero reserved bytes.
    BadHeader,
    /// CRC32C mismatch.
    BadCrc,
    /// The payload does not parse (only possible with a matching CRC if the writer was buggy).
    BadPayload,
}

impl DecodeError {
    /// A short description for logs and `QueueError::Corrupt`.
    pub fn describe(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadMagic => "bad magic",
            DecodeError::BadHeader => "bad header",
            DecodeError::BadCrc => "CRC mismatch",
            DecodeError::BadPayload => "payload does not parse",
        }
    }
}

/// Appends one record to `out`; the payload is the concatenation of `parts`.
pub fn encode(
    kind: Kind,
    segment: u64,
    seq: u64,
    generation: u64,
    parts: &[&[u8]],
    out: &mut Vec<u8>,
) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let start = out.len();
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the header alone (so a reader knows how many payload bytes to fetch). Does not
/// check the CRC; `verify` does, once the payload is there.
pub fn decode_header(buf: &[u8]) -> Result<(Header, u32), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if u32_at(buf, 0) != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let kind = match buf[12] {
        1 => Kind::Message,
        2 => Kind::State,
        3 => Kind::Moved,
        _ => return Err(DecodeError::BadHeader),
    };
    if buf[13..16] != [0, 0, 0] {
        return Err(DecodeError::BadHeader);
    }
    let header = Header {
        kind,
        segment: u64_at(buf, 16),
        seq: u64_at(buf, 24),
        generation: u64_at(buf, 32),
        len: u32_at(buf, 8),
    };
    Ok((header, u32_at(buf, 4)))
}

/// Decodes one whole record at the start of `buf`: header, CRC over header and payload.
/// Returns the header and the payload.
pub fn decode(buf: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
    let (header, crc) = decode_header(buf)?;
    let end = HEADER_LEN
        .checked_add(header.len as usize)
        .ok_or(DecodeError::Truncated)?;
    let record = buf.get(..end).ok_or(DecodeError::Truncated)?;
    if crc32c::crc32c(&record[8..]) != crc {
        return Err(DecodeError::BadCrc);
    }
    Ok((header, &record[HEADER_LEN..]))
}

/// Encodes the envelope part of a message payload; the message bytes follow it.
///
/// Layout: received_at u64, flags u8 (bit 0 SMTPUTF8, bit 1 8-bit body), sender (u16 length +
/// bytes), recipient count u32, each recipient (u16 length + bytes).
pub fn encode_envelope(env: &Envelope) -> Result<Vec<u8>, &'static str> {
    if env.recipients.is_empty() {
        return Err("no recipients");
    }
    let count = u32::try_from(env.recipients.len()).map_err(|_| "too many recipients")?;
    let mut out = Vec::with_capacity(
        16 + env.sender.len() + env.recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
    );
    out.extend_from_slice(&env.received_at.to_le_bytes());
    out.push(u8::from(env.smtputf8) | (u8::from(env.body_8bit) << 1));
    for (i, addr) in std::iter::once(&env.sender)
        .chain(env.recipients.iter())
        .enumerate()
    {
        let len = u16::try_from(addr.len()).map_err(|_| "address longer than 65535 bytes")?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(addr.as_bytes());
        if i == 0 {
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    Ok(out)
}

/// A cursor over a payload that fails with `BadPayload` instead of panicking.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::BadPayload);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64_at(self.take(8)?, 0))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::BadPayload)
    }
}

/// Decodes a message payload: the envelope and the message bytes after it.
pub fn decode_message(payload: &[u8]) -> Result<(Envelope, &[u8]), DecodeError> {
    let mut c = Cursor(payload);
    let received_at = c.u64()?;
    let flags = c.u8()?;
    let sender = c.string()?;
    let count = c.u32()? as usize;
    // Each recipient takes at least 2 bytes: cap the allocation by what is actually there.
    if count == 0 || count > c.0.len() / 2 {
        return Err(DecodeError::BadPayload);
    }
    let mut recipients = Vec::with_capacity(count);
    for _ in 0..count {
        recipients.push(c.string()?);
    }
    let env = Envelope {
        sender,
        recipients,
        received_at,
        smtputf8: flags & 1 != 0,
        body_8bit: flags & 2 != 0,
    };
    Ok((env, c.0))
}

/// A recipient-state payload: which message (its index in the segment), which recipient, and
/// the new state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The message's index (its record sequence in the segment's log).
    pub index: u32,
    /// The recipient's index in the envelope.
    pub recipient: u32,
    /// The new state.
    pub state: RecipientState,
}

/// Length of an encoded `StateChange`.
pub const STATE_PAYLOAD_LEN: usize = 21;

/// Length of one encoded `RecipientState` (inside a state change and a moved message).
const RECIPIENT_STATE_LEN: usize = 13;

/// Encodes a recipient state: tag u8 (0 pending, 1 delivered, 2 failed), attempts u32,
/// next_attempt u64.
fn encode_recipient_state(state: RecipientState) -> [u8; RECIPIENT_STATE_LEN] {
    let (tag, attempts, next) = match state {
        RecipientState::Pending {
            attempts,
            next_attempt,
        } => (0, attempts, next_attempt),
        RecipientState::Delivered => (1, 0, 0),
        RecipientState::Failed => (2, 0, 0),
    };
    let mut out = [0; RECIPIENT_STATE_LEN];
    out[0] = tag;
    out[1..5].copy_from_slice(&attempts.to_le_bytes());
    out[5..13].copy_from_slice(&next.to_le_bytes());
    out
}

/// Decodes what `encode_recipient_state` wrote.
fn decode_recipient_state(c: &mut Cursor<'_>) -> Result<RecipientState, DecodeError> {
    let tag = c.u8()?;
    let attempts = c.u32()?;
    let next_attempt = c.u64()?;
    match tag {
        0 => Ok(RecipientState::Pending {
            attempts,
            next_attempt,
        }),
        1 => Ok(RecipientState::Delivered),
        2 => Ok(RecipientState::Failed),
        _ => Err(DecodeError::BadPayload),
    }
}

/// Encodes a state change: index u32, recipient u32, then the recipient state (see
/// `encode_recipient_state`).
pub fn encode_state(change: &StateChange) -> [u8; STATE_PAYLOAD_LEN] {
    let mut out = [0; STATE_PAYLOAD_LEN];
    out[0..4].copy_from_slice(&change.index.to_le_bytes());
    out[4..8].copy_from_slice(&change.recipient.to_le_bytes());
    out[8..].copy_from_slice(&encode_recipient_state(change.state));
    out
}

/// Decodes a state change.
pub fn decode_state(payload: &[u8]) -> Result<StateChange, DecodeError> {
    if payload.len() != STATE_PAYLOAD_LEN {
        return Err(DecodeError::BadPayload);
    }
    let mut c = Cursor(payload);
    let index = c.u32()?;
    let recipient = c.u32()?;
    let state = decode_recipient_state(&mut c)?;
    Ok(StateChange {
        index,
        recipient,
        state,
    })
}

/// The copy a moved message replaces: its segment and index on the same shard.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MovedFrom {
    /// The older copy's segment (always smaller than the segment holding the moved record).
    pub segment: u64,
    /// The older copy's index in that segment.
    pub index: u32,
}

/// Length of a moved message's prefix for `recipients` recipients.
pub fn moved_prefix_len(recipients: usize) -> usize {
    16 + recipients * RECIPIENT_STATE_LEN
}

/// Encodes the prefix of a moved message: from segment u64, from index u32, state count u32,
/// then one recipient state each. A whole `Message` payload (envelope and bytes) follows it.
pub fn encode_moved_prefix(from: MovedFrom, states: &[RecipientState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(moved_prefix_len(states.len()));
    out.extend_from_slice(&from.segment.to_le_bytes());
    out.extend_from_slice(&from.index.to_le_bytes());
    out.extend_from_slice(&(states.len() as u32).to_le_bytes());
    for state in states {
        out.extend_from_slice(&encode_recipient_state(*state));
    }
    out
}

/// Decodes a moved message: the copy it replaces, the carried states and the `Message`
/// payload after them (for `decode_message`). The state count must match the envelope's
/// recipients; the caller checks that once the envelope is decoded.
pub fn decode_moved(
    payload: &[u8],
) -> Result<(MovedFrom, Vec<RecipientState>, &[u8]), DecodeError> {
    let mut c = Cursor(payload);
    let from = MovedFrom {
        segment: c.u64()?,
        index: c.u32()?,
    };
    let count = c.u32()? as usize;
    // Cap the allocation by what is actually there.
    if count == 0 || count > c.0.len() / RECIPIENT_STATE_LEN {
        return Err(DecodeError::BadPayload);
    }
    let mut states = Vec::with_capacity(count);
    for _ in 0..count {
        states.push(decode_recipient_state(&mut c)?);
    }
    Ok((from, states, c.0))
}

/// A message record of either kind, decoded: envelope, bytes, and for a moved message the copy
/// it replaces and the states it carries.
pub struct AnyMessage<'a> {
    /// The envelope.
    pub envelope: Envelope,
    /// The message bytes.
    pub body: &'a [u8],
    /// The `Message` payload (envelope and bytes, as `encode_envelope` + bytes laid them out).
    pub message_payload: &'a [u8],
    /// For a moved message: the copy it replaces and the states it carried.
    pub moved: Option<(MovedFrom, Vec<RecipientState>)>,
}

/// Decodes the payload of a `Message` or `Moved` record.
pub fn decode_any_message(kind: Kind, payload: &[u8]) -> Result<AnyMessage<'_>, DecodeError> {
    let (moved, message_payload) = match kind {
        Kind::Message => (None, payload),
        Kind::Moved => {
            let (from, states, rest) = decode_moved(payload)?;
            (Some((from, states)), rest)
        }
        Kind::State => return Err(DecodeError::BadPayload),
    };
    let (envelope, body) = decode_message(message_payload)?;
    if let Some((_, states)) = &moved
        && states.len() != envelope.recipients.len()
    {
        return Err(DecodeError::BadPayload);
    }
    Ok(AnyMessage {
        envelope,
        body,
        message_payload,
        moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        encode(Kind::Message, 7, 3, 2, &[b"hello ", b"world"], &mut out);
        out
    }

    #[test]
    fn round_trip() {
        let rec = sample();
        assert_eq!(rec.len(), HEADER_LEN + 11);
        let (h, payload) = decode(&rec).expect("valid record");
        assert_eq!(
            h,
            Header {
                kind: Kind::Message,
                segment: 7,
                seq: 3,
                generation: 2,
                len: 11
            }
        );
        assert_eq!(payload, b"hello world");
    }

    #[test]
    fn damaged_records_are_rejected() {
        let good = sample();
        let flip = |at: usize| {
            let mut b = good.clone();
            b[at] ^= 0x40;
            b
        };
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("empty", vec![], DecodeError::Truncated),
            ("half header", good[..20].to_vec(), DecodeError::Truncated),
            (
                "torn payload",
                good[..good.len() - 1].to_vec(),
                DecodeError::Truncated,
            ),
            ("zeros", vec![0; 64], DecodeError::BadMagic),
            ("magic", flip(1), DecodeError::BadMagic),
            ("crc", flip(5), DecodeError::BadCrc),
            ("length grows", flip(9), DecodeError::Truncated),
            ("kind", flip(12), DecodeError::BadHeader),
            ("reserved", flip(14), DecodeError::BadHeader),
            ("segment", flip(16), DecodeError::BadCrc),
            ("sequence", flip(24), DecodeError::BadCrc),
            ("generation", flip(33), DecodeError::BadCrc),
            ("payload", flip(HEADER_LEN + 2), DecodeError::BadCrc),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(&bytes).map(|_| ()), Err(want), "case {name}");
        }
    }

    #[test]
    fn trailing_bytes_are_not_part_of_the_record() {
        let mut rec = sample();
        rec.extend_from_slice(&[0xff; 10]);
        assert_eq!(decode(&rec).map(|(_, p)| p.len()), Ok(11));
    }

    #[test]
    fn envelope_round_trip_and_limits() {
        let env = Envelope {
            sender: String::new(),
            recipients: vec!["a@example.org".into(), "b@example.net".into()],
            received_at: 1_795_624_291,
            smtputf8: true,
            body_8bit: false,
        };
        let mut payload = encode_envelope(&env).expect("storable");
        payload.extend_from_slice(b"body");
        let (back, body) = decode_message(&payload).expect("decodes");
        assert_eq!(back, env);
        assert_eq!(body, b"body");

        let none = Envelope {
            recipients: vec![],
            ..env.clone()
        };
        assert_eq!(encode_envelope(&none), Err("no recipients"));
        let long = Envelope {
            sender: "x".repeat(70_000),
            ..env
        };
        assert!(encode_envelope(&long).is_err());
    }

    #[test]
    fn bad_message_payloads() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("short sender", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, b'a']),
            (
                "zero recipients",
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                "huge count",
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            ),
            (
                "bad utf8",
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0xff],
            ),
        ];
        for (name, bytes) in cases {
            assert!(decode_message(bytes).is_err(), "case {name}");
        }
    }

    #[test]
    fn state_round_trip_and_rejects() {
        let states = [
            RecipientState::Pending {
                attempts: 3,
                next_attempt: 99,
            },
            RecipientState::Delivered,
            RecipientState::Failed,
        ];
        for state in states {
            let change = StateChange {
                index: 5,
                recipient: 1,
                state,
            };
            assert_eq!(decode_state(&encode_state(&change)), Ok(change));
        }
        let mut bad_tag = encode_state(&StateChange {
            index: 0,
            recipient: 0,
            state: RecipientState::Failed,
        });
        bad_tag[8] = 9;
        assert_eq!(decode_state(&bad_tag), Err(DecodeError::BadPayload));
        assert_eq!(decode_state(&bad_tag[..10]), Err(DecodeError::BadPayload));
    }

    fn moved_sample(states: &[RecipientState], recipients: usize) -> Vec<u8> {
        let env = Envelope {
            sender: "s@example.org".into(),
            recipients: (0..recipients)
                .map(|r| format!("r{r}@example.net"))
                .collect(),
            received_at: 7,
            smtputf8: false,
            body_8bit: true,
        };
        let from = MovedFrom {
            segment: 0x1234,
            index: 9,
        };
        let mut payload = encode_moved_prefix(from, states);
        assert_eq!(payload.len(), moved_prefix_len(states.len()));
        payload.extend_from_slice(&encode_envelope(&env).expect("storable"));
        payload.extend_from_slice(b"the bytes");
        payload
    }

    #[test]
    fn moved_round_trip_and_rejects() {
        let states = [
            RecipientState::Delivered,
            RecipientState::Pending {
                attempts: 4,
                next_attempt: 1 << 40,
            },
        ];
        let payload = moved_sample(&states, 2);
        let m = decode_any_message(Kind::Moved, &payload).expect("decodes");
        assert_eq!(m.body, b"the bytes");
        assert_eq!(m.envelope.recipients.len(), 2);
        let (from, carried) = m.moved.expect("a moved message");
        assert_eq!(
            from,
            MovedFrom {
                segment: 0x1234,
                index: 9
            }
        );
        assert_eq!(carried, states);
        // The message part is a plain message payload: it decodes as kind 1 on its own.
        let plain = decode_any_message(Kind::Message, m.message_payload).expect("decodes");
        assert!(plain.moved.is_none());
        assert_eq!(plain.body, b"the bytes");
        // A whole record of the new kind round-trips through the header too.
        let mut rec = Vec::new();
        encode(Kind::Moved, 5, 0, 1, &[&payload], &mut rec);
        assert_eq!(decode(&rec).map(|(h, _)| h.kind), Ok(Kind::Moved));

        let mismatch = moved_sample(&states, 3);
        let mut bad_tag = payload.clone();
        bad_tag[16] = 7;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("state count differs from the envelope", mismatch),
            ("bad state tag", bad_tag),
            ("zero states", moved_sample(&[], 1)),
            ("short prefix", payload[..10].to_vec()),
            ("huge count", {
                let mut p = payload.clone();
                p[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
                p
            }),
        ];
        for (name, bytes) in cases {
            assert!(
                decode_any_message(Kind::Moved, &bytes).is_err(),
                "case {name}"
            );
        }
        assert!(decode_any_message(Kind::State, &payload).is_err());
    }
}
