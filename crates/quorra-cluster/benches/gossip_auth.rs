//! What authenticating gossip costs per packet: sealing (HMAC-SHA256 over the message)
//! on the sender and opening (the same HMAC and a constant-time comparison) plus the
//! replay check on the receiver, for a heartbeat-sized message (200 bytes), a typical
//! delta (2 KiB) and a full datagram (64,000 bytes).
//!
//! Run: `cargo bench -p quorra-cluster --bench gossip_auth`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quorra_cluster::gossip_auth::{GossipKey, Header, ReplayGuard};
use quorra_cluster::rpc::ClusterSecret;

fn seal_and_open(c: &mut Criterion) {
    let key = GossipKey::derive(&ClusterSecret::new("bench secret"));
    let mut group = c.benchmark_group("gossip_auth");
    for size in [200usize, 2048, 64_000] {
        let message = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &message, |b, message| {
            let mut nonce = 0u64;
            b.iter(|| {
                nonce += 1;
                let header = Header {
                    sent_at_ms: 1_800_000_000_000,
                    nonce,
                    origin: 1,
                };
                black_box(key.seal(header, black_box(message)))
            });
        });
        group.bench_with_input(
            BenchmarkId::new("open_and_check", size),
            &message,
            |b, message| {
                let mut guard = ReplayGuard::new(2);
                let mut nonce = 0u64;
                b.iter_batched(
                    || {
                        nonce += 1;
                        let header = Header {
                            sent_at_ms: 1_800_000_000_000,
                            nonce,
                            origin: 1,
                        };
                        key.seal(header, message)
                    },
                    |body| {
                        let (header, message) = key.open(&body).expect("authentic");
                        guard.admit(1_800_000_000_000, header).expect("fresh");
                        black_box(message.len())
                    },
                    criterion::BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
