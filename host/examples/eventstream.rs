//! In-process cost of framing a Bedrock `ConverseStream` body (AWS event-stream binary
//! frames) into events, as the host does on the streaming path: 200 `contentBlockDelta`
//! frames of ~150-byte JSON payloads arriving in 1–4 KB chunks.
//!
//! `cargo run --release -p llmgate --example eventstream`

use std::time::Instant;

use llmgate::fuzzing::{Framing, frame_chunks};
use llmgate_mock::bedrock::encode_event_frame;

/// The wire bytes of a 200-frame stream.
fn stream() -> Vec<u8> {
    let mut wire = Vec::new();
    for n in 0..200 {
        let payload = format!(
            r#"{{"contentBlockIndex":0,"delta":{{"text":"word {n} of the answer, with some more text "}},"p":"{}"}}"#,
            &"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[..(n * 7) % 61 + 1]
        );
        wire.extend(encode_event_frame(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        ));
    }
    wire
}

/// `wire` cut into chunks of 1–4 KB (a fixed pseudo-random sequence).
fn chunks(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut at, mut seed) = (0, 0x2545_f491_u32);
    while at < wire.len() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = (1024 + (seed >> 8) as usize % 3072).min(wire.len() - at);
        out.push(&wire[at..at + len]);
        at += len;
    }
    out
}

/// Median over 15 rounds of the time per stream of `frame`, in µs.
fn measure(label: &str, chunks: &[&[u8]], frame: impl Fn(&[&[u8]]) -> usize) {
    let frames = frame(chunks);
    let n = 2_000;
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(frame(std::hint::black_box(chunks)));
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    let us = rounds[rounds.len() / 2];
    println!(
        "{label:<44} {us:>8.1} µs per stream, {:>6.0} ns per frame ({frames} frames)",
        us * 1e3 / frames as f64
    );
}

fn main() {
    let wire = stream();
    let chunks = chunks(&wire);
    println!(
        "{} bytes in {} chunks, {} frames",
        wire.len(),
        chunks.len(),
        200
    );
    measure("host framer (aws-smithy-eventstream)", &chunks, |c| {
        let (events, err) = frame_chunks(Framing::AwsEventstream, c);
        assert!(err.is_none());
        events.len()
    });
}
