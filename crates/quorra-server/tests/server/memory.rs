//! maxmemory through the server.

use redis::Value;

use crate::common::*;

#[tokio::test]
async fn a_flood_of_three_times_maxmemory_stays_under_it() {
    const MAXMEMORY: u64 = 2 * 1024 * 1024;
    let server = start_with(|config| config.maxmemory = MAXMEMORY).await;
    let mut c = connect(&server).await;
    let value = "v".repeat(200);
    let mut written = 0u64;
    let mut batch = 0;
    while written < 3 * MAXMEMORY {
        let mut pipe = redis::pipe();
        for i in 0..500 {
            pipe.cmd("SET")
                .arg(format!("key:{batch}:{i}"))
                .arg(&value)
                .ignore();
            written += 200;
        }
        let () = pipe.query_async(&mut c).await.unwrap();
        batch += 1;
        assert!(server.shared.store.used_memory() <= MAXMEMORY);
    }
    let Value::BulkString(info) = ok(&mut c, &["INFO", "memory"]).await else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(used <= MAXMEMORY, "used_memory {used} > maxmemory");
    assert!(
        used > MAXMEMORY / 2,
        "the limit is used, not wasted: {used}"
    );
    let Value::BulkString(stats) = ok(&mut c, &["INFO", "stats"]).await else {
        panic!()
    };
    let evicted: u64 = String::from_utf8(stats)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(evicted > 0);
    // The newest keys survive; the oldest were evicted.
    assert_eq!(
        ok(&mut c, &["EXISTS", &format!("key:{}:499", batch - 1)]).await,
        int(1)
    );
    assert_eq!(ok(&mut c, &["EXISTS", "key:0:0"]).await, int(0));
    server.shutdown().await;
}

#[tokio::test]
async fn noeviction_answers_oom() {
    let server = start_with(|config| {
        config.maxmemory = 64 * 1024;
        config.maxmemory_policy = quorra_store::MaxmemoryPolicy::NoEviction;
    })
    .await;
    let mut c = connect(&server).await;
    let value = "v".repeat(1000);
    let mut refused = None;
    for i in 0..200 {
        if let Err(error) = run(&mut c, &["SET", &format!("k{i}"), &value]).await {
            refused = Some(format!(
                "{} {}",
                error.code().unwrap_or(""),
                error.detail().unwrap_or("")
            ));
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some("OOM command not allowed when used memory > 'maxmemory'.")
    );
    assert_eq!(
        ok(&mut c, &["GET", "k0"]).await,
        bulk(&value),
        "nothing was evicted"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fifty_ordinary_clients_fit_the_client_budget_of_a_small_maxmemory() {
    // maxmemory 1mb: the default client budget is 256 KiB, less than what 50 idle
    // connections' buffers hold; only what grows beyond each one's first 64 KiB counts.
    let server = start_with(|config| {
        config.maxmemory = 1 << 20;
        config.maxmemory_clients = 256 << 10;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..50 {
        let mut c = connect(&server).await;
        ok(&mut c, &["SET", &format!("k{i}"), &"v".repeat(100)]).await;
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let reply = ok(c, &["GET", &format!("k{i}")]).await;
        assert_ne!(reply, Value::Nil, "client {i}");
    }
    assert_eq!(server.shared.clients.evicted(), 0);
    assert_eq!(server.shared.clients.len(), 50);
    server.shutdown().await;
}
