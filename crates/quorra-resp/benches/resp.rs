//! RESP benchmarks: parsing requests the way the server sees them, and encoding replies.
//!
//! `cargo bench -p quorra-resp`

#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quorra_resp::{Limits, Protocol, RequestParser, encode, parse_frame};
use std::hint::black_box;

fn set_pipeline(commands: usize) -> BytesMut {
    let mut wire = BytesMut::new();
    for i in 0..commands {
        let key = format!("key:{i:012}");
        encode::command(
            &mut wire,
            &[b"SET".as_slice(), key.as_bytes(), &[b'v'; 100]],
        );
    }
    wire
}

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_requests");
    for commands in [1, 16] {
        let wire = set_pipeline(commands);
        group.throughput(Throughput::Elements(commands as u64));
        group.bench_function(format!("set_100b_pipeline_{commands}"), |b| {
            let mut parser = RequestParser::default();
            b.iter(|| {
                let mut buf = wire.clone();
                while let Some(command) = parser.next_request(&mut buf).unwrap() {
                    black_box(command);
                }
            })
        });
    }
    group.bench_function("inline_ping", |b| {
        let mut parser = RequestParser::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&b"PING\r\n"[..]);
            black_box(parser.next_request(&mut buf).unwrap());
        })
    });
    group.finish();
}

fn replies(c: &mut Criterion) {
    let value = [b'v'; 100];
    c.bench_function("encode/bulk_100b", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            encode::bulk(&mut buf, black_box(&value));
        })
    });
    c.bench_function("encode/map_4_pairs_resp3", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            encode::map_header(&mut buf, 4, Protocol::Resp3);
            for i in 0..4 {
                encode::bulk(&mut buf, b"field");
                encode::integer(&mut buf, black_box(i));
            }
        })
    });
    let mut reply = BytesMut::new();
    encode::bulk(&mut reply, &value);
    c.bench_function("parse_frame/bulk_100b", |b| {
        b.iter(|| black_box(parse_frame(black_box(&reply), &Limits::default()).unwrap()))
    });
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
