//! What a request can make the broker allocate, counted by an allocator that records every allocation (dhat), in
//! a test binary of its own because the allocator is the whole process's.
//!
//! Regressions: a 16 KB Metadata request naming one 1,000-partition topic 2,000 times drove the broker's memory
//! from 15 MB to 400 MB; and an array whose claimed length fit the bytes left in the frame still reserved that
//! many times the element's in-memory size (about 100 times the frame) before decoding a single element.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use kafka_protocol::messages::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// The most the heap grew above `before` since the profiler started, in bytes.
fn growth_since(before: usize) -> usize {
    dhat::HeapStats::get().max_bytes.saturating_sub(before)
}

#[tokio::test]
async fn requests_cost_memory_in_proportion_to_their_own_size_not_to_their_repeats_or_claims() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "wide", 1000).await;

    // One topic named 2,000 times: the answer and the work are those of one topic.
    let before = dhat::HeapStats::get().curr_bytes;
    let named = metadata_request::MetadataRequestTopic::default().with_name(Some(topic("wide")));
    let request = MetadataRequest::default().with_topics(Some(vec![named; 2000]));
    let answer = client.call_raw(ApiKey::Metadata, 1, &request).await;
    let grew = growth_since(before);
    assert!(answer.len() < 100_000, "answer of {} bytes", answer.len());
    assert!(grew < 8 << 20, "a 2,000-times repeated topic cost {grew} bytes of heap");

    // An array that claims one element per byte left, while its elements are names of 1,000 bytes: about a
    // thousand decode before the frame runs out. Reserving for the claim would cost ~1M elements' memory.
    let mut frame = BytesMut::new();
    let body_len: i32 = 1 << 20;
    frame.put_i32(body_len);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(1);
    frame.put_i32(99);
    frame.put_i16(-1); // no client id
    let claimed = body_len - 14;
    frame.put_i32(claimed);
    while frame.len() + 1002 <= 4 + body_len as usize {
        frame.put_i16(1000);
        frame.put_bytes(b'x', 1000);
    }
    frame.resize(4 + body_len as usize, 0);
    let mut raw = Client::connect(broker.address()).await;
    let before = dhat::HeapStats::get().curr_bytes;
    raw.stream.write_all(&frame).await.unwrap();
    // The broker refuses the malformed request by closing the connection.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(PATIENCE, raw.stream.read(&mut byte)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "the malformed request closes the connection");
    let grew = growth_since(before);
    assert!(grew < 8 << 20, "a 1 MiB frame claiming {claimed} elements cost {grew} bytes of heap");

    // A request without records over max_request_bytes is refused before it is decoded: a Metadata request of
    // 2-byte entries (each a struct of tens of bytes once decoded) would otherwise cost tens of times its size.
    let body_len: i32 = 16 << 20;
    let mut frame = BytesMut::new();
    frame.put_i32(body_len);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(1);
    frame.put_i32(100);
    frame.put_i16(-1);
    frame.put_i32((body_len - 14) / 2);
    while frame.len() + 2 <= 4 + body_len as usize {
        frame.put_i16(0);
    }
    let mut raw = Client::connect(broker.address()).await;
    let before = dhat::HeapStats::get().curr_bytes;
    raw.stream.write_all(&frame).await.unwrap();
    let closed = tokio::time::timeout(PATIENCE, raw.stream.read(&mut byte)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "the oversized request closes the connection");
    let grew = growth_since(before);
    assert!(grew < 24 << 20, "a 16 MiB Metadata request of empty names cost {grew} bytes of heap");
    broker.stop().await;
}
