//! The admin HTTP API over a real socket.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// One HTTP/1.1 request; returns the status and the body.
pub(crate) async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 4 + size..];
    }
}

pub(crate) fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn keys_round_trip_over_http_and_resp() {
    let server = start().await;
    let addr = server.http_addr;
    let (status, _) = http(
        addr,
        "PUT",
        "/v1/keys/user%2F1?ttl=60",
        &[],
        b"\x00binary\xff",
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = http(addr, "GET", "/v1/keys/user%2F1", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"\x00binary\xff"[..]));
    let mut c = connect(&server).await;
    assert_eq!(ok(&mut c, &["TTL", "user/1"]).await, int(60));
    ok(&mut c, &["SET", "from-resp", "hello"]).await;
    assert_eq!(
        http(addr, "GET", "/v1/keys/from-resp", &[], b"").await,
        (200, b"hello".to_vec())
    );
    let (status, _) = http(addr, "DELETE", "/v1/keys/from-resp", &[], b"").await;
    assert_eq!(status, 204);
    let (status, body) = http(addr, "GET", "/v1/keys/from-resp", &[], b"").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"], "no such key");
    let (status, _) = http(addr, "DELETE", "/v1/keys/from-resp", &[], b"").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_json_errors() {
    let server = start().await;
    let addr = server.http_addr;
    for ttl in ["0", "-5", "soon"] {
        let (status, body) = http(addr, "PUT", &format!("/v1/keys/k?ttl={ttl}"), &[], b"v").await;
        assert_eq!(status, 400, "ttl={ttl}");
        assert!(json(&body)["error"].as_str().unwrap().contains("ttl"));
    }
    let (status, body) = http(addr, "GET", "/v1/nothing-here", &[], b"").await;
    assert_eq!(status, 404);
    assert!(json(&body)["error"].is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn out_of_memory_is_507_under_noeviction() {
    let server = start_with(|config| {
        config.maxmemory = 4096;
        config.maxmemory_policy = quorra_store::MaxmemoryPolicy::NoEviction;
    })
    .await;
    let (status, body) = http(server.http_addr, "PUT", "/v1/keys/big", &[], &[b'x'; 8192]).await;
    assert_eq!(status, 507);
    assert!(json(&body)["error"].is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token_protects_everything_but_health() {
    let server = start_with(|config| config.http_token = Some("t0ken".into())).await;
    let addr = server.http_addr;
    let (status, body) = http(addr, "GET", "/v1/stats", &[], b"").await;
    assert_eq!(status, 401);
    assert!(json(&body)["error"].as_str().unwrap().contains("token"));
    assert_eq!(
        http(
            addr,
            "GET",
            "/v1/stats",
            &["Authorization: Bearer wrong"],
            b""
        )
        .await
        .0,
        401
    );
    assert_eq!(http(addr, "GET", "/metrics", &[], b"").await.0, 401);
    assert_eq!(http(addr, "PUT", "/v1/keys/k", &[], b"v").await.0, 401);
    let (status, body) = http(
        addr,
        "GET",
        "/v1/stats",
        &["Authorization: Bearer t0ken"],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["keys"], 0);
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.0, 200);
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_and_metrics_follow_traffic() {
    let server = start().await;
    let mut c = connect(&server).await;
    ok(&mut c, &["SET", "k", "v"]).await;
    ok(&mut c, &["GET", "k"]).await;
    ok(&mut c, &["GET", "missing"]).await;
    let _ = run(&mut c, &["GET"]).await;
    let (status, body) = http(server.http_addr, "GET", "/v1/stats", &[], b"").await;
    assert_eq!(status, 200);
    let stats = json(&body);
    assert_eq!(
        (
            stats["keys"].as_u64(),
            stats["keyspace_hits"].as_u64(),
            stats["keyspace_misses"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(stats["connected_clients"], 1);
    let (status, body) = http(server.http_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "quorra_commands_total{command=\"get\",outcome=\"ok\"} 2",
        "quorra_commands_total{command=\"get\",outcome=\"rejected\"} 1",
        "quorra_commands_total{command=\"set\",outcome=\"ok\"} 1",
        "quorra_keyspace_hits_total 1",
        "quorra_keyspace_misses_total 1",
        "quorra_keys 1",
        "quorra_connected_clients 1",
        "quorra_command_duration_seconds_count{command=\"get\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "metrics lack {line:?}:\n{text}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_password_alone_never_leaves_the_api_open() {
    let server = start_with(|config| config.requirepass = Some("pw".into())).await;
    let addr = server.http_addr;
    let (status, body) = http(addr, "GET", "/v1/keys/k", &[], b"").await;
    assert_eq!(status, 401);
    assert!(json(&body)["error"].is_string());
    assert_eq!(http(addr, "PUT", "/v1/keys/k", &[], b"v").await.0, 401);
    let bearer = ["Authorization: Bearer pw"];
    assert_eq!(http(addr, "PUT", "/v1/keys/k", &bearer, b"v").await.0, 204);
    assert_eq!(
        http(addr, "GET", "/v1/keys/k", &bearer, b"").await,
        (200, b"v".to_vec())
    );
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.0, 200);
}

#[tokio::test]
async fn every_refusal_is_json_and_a_large_body_is_refused_before_it_is_read() {
    let server = start().await;
    let addr = server.http_addr;
    for (method, path, status) in [
        ("PATCH", "/v1/stats", 405),
        ("GET", "/nowhere", 404),
        ("DELETE", "/v1/keys/missing", 404),
        ("PUT", "/v1/keys/k?ttl=soon", 400),
    ] {
        let (got, body) = http(addr, method, path, &[], b"x").await;
        assert_eq!(got, status, "{method} {path}");
        let error = json(&body)["error"].as_str().map(str::to_owned);
        assert!(
            error.is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body:?}"
        );
    }
    // 1 GiB announced, nothing sent: the answer comes at once, not after a read.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            b"PUT /v1/keys/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1073741824\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read(&mut response),
    )
    .await
    .expect("answered without the body")
    .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"error\""), "{response}");
}

#[tokio::test]
async fn slow_requests_are_cut_off_and_connections_are_capped() {
    let server = start_with(|config| {
        config.http_request_timeout = std::time::Duration::from_millis(300);
        config.http_max_connections = 4;
    })
    .await;
    let addr = server.http_addr;
    // A body that never finishes: 408, as JSON.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"PUT /v1/keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"error\""), "{response}");
    // Headers that never finish: the connection is closed.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /v1/stats HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "a half-sent request was kept open");
    // Four idle connections hold every slot: a fifth waits until one closes, and the
    // RESP port answers all along.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let waiting = tokio::spawn(http(addr, "GET", "/healthz", &[], b""));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    let mut c = connect(&server).await;
    assert_eq!(
        ok(&mut c, &["PING"]).await,
        redis::Value::SimpleString("PONG".into())
    );
    // The idle ones are closed by the header timeout; then the fifth is served.
    assert_eq!(waiting.await.unwrap().0, 200);
    drop(idle);
}
