//! Round-trip latency of one RPC over loopback.
//!
//! One client connection (`connections_per_peer = 1`), sequential calls with a 100-byte
//! payload to an echo handler; server and client share one tokio runtime, either with
//! two worker threads (`..._multi_thread`, the realistic case: every hop between tasks
//! may cross threads) or a single thread (`..._current_thread`: the protocol's own cost
//! without cross-thread wake-ups).
//!
//! Run: `cargo bench -p quorra-cluster --bench rpc`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use quorra_cluster::rpc::{ClusterSecret, RpcClient, RpcConfig, RpcServer};
use quorra_ring::NodeId;

fn round_trip(c: &mut Criterion) {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench_on(
        c,
        "rpc_round_trip_100B_1conn_sequential_multi_thread",
        multi,
    );
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_on(
        c,
        "rpc_round_trip_100B_1conn_sequential_current_thread",
        single,
    );
}

fn bench_on(c: &mut Criterion, name: &str, rt: tokio::runtime::Runtime) {
    let secret = ClusterSecret::new("bench-secret");
    let server = rt
        .block_on(RpcServer::bind(
            "127.0.0.1:0",
            RpcConfig::new("server", secret.clone()),
            |_from: NodeId, payload: Bytes| async move { Ok::<_, String>(payload) },
        ))
        .expect("bind");
    let addr = server.local_addr();
    let mut config = RpcConfig::new("client", secret);
    config.connections_per_peer = 1;
    let client = RpcClient::new(config);
    let payload = Bytes::from(vec![0x5a; 100]);
    // Connect and authenticate outside the measurement.
    rt.block_on(client.call(addr, payload.clone()))
        .expect("warm-up call");

    c.bench_function(name, |b| {
        b.iter(|| {
            let reply = rt
                .block_on(client.call(addr, black_box(payload.clone())))
                .expect("call");
            black_box(reply)
        })
    });
    rt.block_on(server.shutdown());
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
