//! The SSE and NDJSON framers of upstream streams. Bytes arrive in arbitrary chunks: the
//! events (and the point of the first error) must not depend on where the chunks are cut.
//! Input: one byte choosing the framing and the chunk sizes' seed, then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate::fuzzing::Framing;
use llmgate::gateway::sse::encode;

/// Every event, then the error text if framing failed.
fn frame(framing: Framing, chunks: &[&[u8]]) -> llmgate::fuzzing::Framed {
    llmgate::fuzzing::frame_chunks(framing, chunks)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let framing = if seed & 1 == 0 {
        Framing::Sse
    } else {
        Framing::Ndjson
    };
    let whole = frame(framing, &[stream]);
    // Chunk sizes 1..=16 from the seed, cycling.
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut n = usize::from(seed >> 1);
    while !rest.is_empty() {
        let size = (n % 16 + 1).min(rest.len());
        let (a, b) = rest.split_at(size);
        chunks.push(a);
        rest = b;
        n = n.wrapping_mul(31).wrapping_add(7);
    }
    let cut = frame(framing, &chunks);
    assert_eq!(whole, cut, "framing depends on where the chunks are cut");
    // What the host re-encodes for clients frames back to the same events.
    if framing == Framing::Sse && whole.1.is_none() {
        let mut wire = bytes::BytesMut::new();
        for (event, data) in &whole.0 {
            let ev = llmgate::plugins::SseEvent {
                event: event.clone(),
                data: data.clone(),
            };
            encode(&mut wire, &ev);
        }
        let again = frame(Framing::Sse, &[&wire]);
        let expected: Vec<_> = whole
            .0
            .iter()
            .map(|(e, d)| (e.clone().filter(|e| !e.is_empty()), d.clone()))
            .collect();
        let got: Vec<_> = again
            .0
            .iter()
            .map(|(e, d)| (e.clone().filter(|e| !e.is_empty()), d.clone()))
            .collect();
        assert_eq!(again.1, None, "re-encoded events frame without error");
        assert_eq!(expected, got, "re-encoded events frame back to themselves");
    }
});
