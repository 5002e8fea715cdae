//! The AWS event-stream framer (Bedrock's ConverseStream). Input: one mode byte, then
//! either raw wire bytes, or (odd mode) pieces that are wrapped into frames with correct
//! lengths and checksums, so the header parser behind the checksums gets fuzzed too. The
//! frames must not depend on where the chunks are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate::fuzzing::Framing;
use llmgate::gateway::aws::EventStreamParser;

/// Wrap `headers` and `payload` into one frame with valid prelude and message checksums.
fn frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 16 + headers.len() + payload.len();
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&(total as u32).to_be_bytes());
    f.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude = crc32fast::hash(&f);
    f.extend_from_slice(&prelude.to_be_bytes());
    f.extend_from_slice(headers);
    f.extend_from_slice(payload);
    let crc = crc32fast::hash(&f);
    f.extend_from_slice(&crc.to_be_bytes());
    f
}

/// Pieces separated by `\0\0`: each is `headers \0\1 payload` (headers only if no `\0\1`).
fn frames(spec: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        let (piece, next) = match rest.windows(2).position(|w| w == b"\0\0") {
            Some(at) => (&rest[..at], &rest[at + 2..]),
            None => (rest, &[][..]),
        };
        let (headers, payload) = match piece.windows(2).position(|w| w == b"\0\x01") {
            Some(at) => (&piece[..at], &piece[at + 2..]),
            None => (piece, &[][..]),
        };
        wire.extend(frame(headers, payload));
        rest = next;
    }
    wire
}

type Outcome = llmgate::fuzzing::Framed;

fn decode(chunks: &[&[u8]]) -> Outcome {
    llmgate::fuzzing::frame_chunks(Framing::AwsEventstream, chunks)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wire = if mode & 1 == 1 {
        frames(rest)
    } else {
        rest.to_vec()
    };
    // The raw parser: frames are never longer than what was pushed.
    let mut p = EventStreamParser::default();
    p.push(&wire);
    let mut seen = 0;
    while let Ok(Some(f)) = p.next_frame() {
        seen += 16 + f.payload().len();
        assert!(seen <= wire.len());
    }
    let whole = decode(&[&wire]);
    let size = usize::from(mode >> 1) % 32 + 1;
    let chunks: Vec<&[u8]> = wire.chunks(size).collect();
    assert_eq!(
        whole,
        decode(&chunks),
        "framing depends on where the chunks are cut"
    );
});
