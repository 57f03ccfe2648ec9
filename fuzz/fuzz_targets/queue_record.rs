//! Fuzz target: the queue's record decoder, what recovery and `ringmail queue` read from disk
//! after a crash, a torn write or a disk that returns garbage. Whatever the bytes: no panic and
//! no allocation beyond what the bytes can hold; a stream of records walks to its end the way
//! recovery does; every payload that decodes re-encodes to one that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::queue::record::{
    self, DecodeError, HEADER_LEN, Kind, decode_any_message, decode_message, decode_state,
    encode_envelope, encode_state,
};

fuzz_target!(|data: &[u8]| {
    // As a raw segment file: walk records from the start, as recovery's scan does.
    let mut rest = data;
    while let Ok((header, payload)) = record::decode(rest) {
        assert_eq!(payload.len(), header.len as usize);
        match header.kind {
            Kind::State => {
                if let Ok(change) = decode_state(payload) {
                    assert_eq!(decode_state(&encode_state(&change)), Ok(change));
                }
            }
            kind => check_message(kind, payload),
        }
        rest = &rest[HEADER_LEN + payload.len()..];
    }

    // As a payload on its own, of each kind (the CRC check above rarely lets fuzzed payloads
    // through, so the payload decoders get the raw bytes as well).
    check_message(Kind::Message, data);
    check_message(Kind::Moved, data);
    if let Ok(change) = decode_state(data) {
        assert_eq!(decode_state(&encode_state(&change)), Ok(change));
    }

    // Wrapped in a valid header: the decoder gives back exactly what was encoded.
    let mut out = Vec::new();
    record::encode(Kind::Message, 7, 3, 2, &[data], &mut out);
    let (header, payload) = record::decode(&out).expect("a freshly encoded record decodes");
    assert_eq!((header.segment, header.seq, header.generation), (7, 3, 2));
    assert_eq!(payload, data);
    if let Some(last) = out.len().checked_sub(1) {
        // A torn tail is reported as truncated, never read past.
        assert_eq!(record::decode(&out[..last]), Err(DecodeError::Truncated));
    }
});

fn check_message(kind: Kind, payload: &[u8]) {
    let Ok(message) = decode_any_message(kind, payload) else {
        return;
    };
    if let Some((_, states)) = &message.moved {
        assert_eq!(states.len(), message.envelope.recipients.len());
    }
    let Ok(mut again) = encode_envelope(&message.envelope) else {
        return;
    };
    again.extend_from_slice(message.body);
    let (envelope, body) = decode_message(&again).expect("a re-encoded envelope decodes");
    assert_eq!(envelope, message.envelope);
    assert_eq!(body, message.body);
}
