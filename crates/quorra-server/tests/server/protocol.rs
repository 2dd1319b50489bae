//! Raw-socket tests: the bytes on the wire, bad input, and who gets disconnected.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Sends `input` and returns everything the server sends until it closes the connection
/// or stays quiet for a moment; and whether it closed.
async fn exchange(server: &quorra_server::RunningServer, input: &[u8]) -> (String, bool) {
    let mut socket = TcpStream::connect(server.resp_addr).await.unwrap();
    socket.write_all(input).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&reply).into_owned(), true),
            Ok(Ok(n)) => reply.extend_from_slice(&chunk[..n]),
            Err(_quiet) => return (String::from_utf8_lossy(&reply).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn exact_reply_bytes() {
    let server = start().await;
    let (reply, closed) = exchange(
        &server,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nGET k\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
    )
    .await;
    assert_eq!(reply, "+OK\r\n$2\r\nv1\r\n+PONG\r\n+PONG\r\n");
    assert!(!closed);
    let (reply, _) = exchange(&server, b"GET nothing\r\nINCR k\r\n").await;
    assert_eq!(
        reply,
        "$-1\r\n-ERR value is not an integer or out of range\r\n"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn command_errors_keep_the_connection() {
    let server = start().await;
    let (reply, closed) = exchange(&server, b"FOO bar\r\nGET\r\nPING\r\n").await;
    assert_eq!(
        reply,
        "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n\
         -ERR wrong number of arguments for 'get' command\r\n+PONG\r\n"
    );
    assert!(!closed);
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_reply_then_close() {
    let server = start().await;
    for (input, error) in [
        (
            &b"*1\r\n$abc\r\n"[..],
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"SET \"k v\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // Larger than the 512 MB proto-max-bulk-len.
        (
            b"*2\r\n$3\r\nSET\r\n$600000000\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ] {
        let (reply, closed) = exchange(&server, input).await;
        assert_eq!(reply, error, "for {:?}", String::from_utf8_lossy(input));
        assert!(closed, "the connection closes after {error}");
    }
    // Commands before the bad frame still ran and replied.
    let (reply, closed) = exchange(&server, b"PING\r\n*1\r\n$-7\r\n").await;
    assert_eq!(
        reply,
        "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(closed);
    server.shutdown().await;
}

/// A SADD of `members` members as RESP.
fn sadd(members: usize) -> Vec<u8> {
    let mut command = format!("*{}\r\n$4\r\nSADD\r\n$1\r\ns\r\n", members + 2).into_bytes();
    for member in 0..members {
        let member = member.to_string();
        command.extend_from_slice(format!("${}\r\n{member}\r\n", member.len()).as_bytes());
    }
    command
}

#[tokio::test]
async fn a_command_with_more_arguments_than_proto_max_multibulk_len_is_refused() {
    // Ten million members in one SADD: refused from its header, before any member is
    // read, under the default limit (1,048,576 arguments).
    let server = start().await;
    let (reply, closed) = exchange(&server, b"*10000002\r\n$4\r\nSADD\r\n").await;
    assert_eq!(reply, "-ERR Protocol error: invalid multibulk length\r\n");
    assert!(closed);
    server.shutdown().await;

    // The limit is the node's setting: 1,024 arguments take a SADD of 1,022 members,
    // not one of 1,023.
    let server = start_with(|config| config.proto_max_multibulk_len = 1024).await;
    assert_eq!(
        exchange(&server, &sadd(1022)).await,
        (":1022\r\n".to_owned(), false)
    );
    let (reply, closed) = exchange(&server, &sadd(1023)).await;
    assert_eq!(reply, "-ERR Protocol error: invalid multibulk length\r\n");
    assert!(closed);
    let mut c = connect(&server).await;
    assert_eq!(
        ok(&mut c, &["CONFIG", "GET", "proto-max-multibulk-len"]).await,
        array(vec![bulk("proto-max-multibulk-len"), bulk("1024")])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn inline_requests_without_a_newline_are_bounded() {
    let server = start().await;
    let (reply, closed) = exchange(&server, &vec![b'a'; 70 * 1024]).await;
    assert_eq!(reply, "-ERR Protocol error: too big inline request\r\n");
    assert!(closed);
    server.shutdown().await;
}

#[tokio::test]
async fn a_misbehaving_client_does_not_disturb_others() {
    let server = start().await;
    let mut good = connect(&server).await;
    ok(&mut good, &["SET", "k", "v"]).await;
    for _ in 0..20 {
        let _ = exchange(&server, b"*1\r\n$99999999999999999999\r\n").await;
        let _ = exchange(&server, b"\x00\xff\r\n*-5\r\n$").await;
    }
    assert_eq!(ok(&mut good, &["GET", "k"]).await, bulk("v"));
    assert_eq!(
        server.shared.clients.len(),
        1,
        "bad clients were disconnected and unregistered"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn idle_clients_are_closed_after_timeout() {
    let server = start_with(|config| config.timeout = Some(Duration::from_secs(1))).await;
    let mut socket = TcpStream::connect(server.resp_addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the server closed the idle connection: {read:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn maxclients_refuses_with_redis_text() {
    let server = start_with(|config| config.maxclients = 1).await;
    let mut first = connect(&server).await;
    let (reply, closed) = exchange(&server, b"PING\r\n").await;
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    assert!(closed);
    assert_eq!(
        ok(&mut first, &["PING"]).await,
        redis::Value::SimpleString("PONG".into())
    );
    server.shutdown().await;
}

#[test]
fn protected_mode_refuses_remote_clients_without_a_password() {
    use quorra_node::shared::{NodeParts, Shared};
    use quorra_server::server::refusal;
    use std::net::IpAddr;
    let config = quorra_server::Config::default();
    let parts = NodeParts::new(
        &config,
        None,
        std::sync::Arc::new(quorra_store::SystemClock),
    );
    let shared = Shared::new(config, "127.0.0.1:0".parse().unwrap(), parts, None);
    let remote: IpAddr = "192.0.2.7".parse().unwrap();
    let refused = refusal(&shared, remote).expect("remote client refused");
    assert!(refused.starts_with("-DENIED") && refused.contains("--requirepass"));
    assert_eq!(
        refusal(&shared, "127.0.0.1".parse().unwrap()),
        None,
        "loopback is always allowed"
    );
    assert_eq!(refusal(&shared, "::1".parse().unwrap()), None);
    shared.settings.write().requirepass = Some("pw".into());
    assert_eq!(
        refusal(&shared, remote),
        None,
        "a password lifts protected mode"
    );
    shared.settings.write().requirepass = None;
    shared.settings.write().protected_mode = false;
    assert_eq!(refusal(&shared, remote), None);
}

/// quorra-resp's typed commands (what the client and `quorra bench` send) are served as
/// Redis serves them, byte for byte.
#[tokio::test]
async fn typed_commands_from_quorra_resp_are_served() {
    use quorra_resp::Command;
    use quorra_resp::command::{SetCondition, SetExpiry, SetOptions, TtlUnit};
    let server = start_with(|config| config.requirepass = Some("pw".into())).await;
    let set = |key, value, options| Command::Set {
        key,
        value,
        options,
    };
    let commands = [
        (Command::Ping, "-NOAUTH Authentication required.\r\n"),
        (
            Command::Auth {
                username: None,
                password: "pw",
            },
            "+OK\r\n",
        ),
        (
            Command::Auth {
                username: Some("default"),
                password: "pw",
            },
            "+OK\r\n",
        ),
        (Command::Ping, "+PONG\r\n"),
        (set(b"k", b"v1", SetOptions::default()), "+OK\r\n"),
        (
            set(
                b"k",
                b"v2",
                SetOptions {
                    condition: SetCondition::IfPresent,
                    expiry: SetExpiry::Ex(100),
                    get: true,
                },
            ),
            "$2\r\nv1\r\n",
        ),
        (
            set(
                b"k",
                b"v3",
                SetOptions {
                    condition: SetCondition::IfAbsent,
                    ..SetOptions::default()
                },
            ),
            "$-1\r\n",
        ),
        (
            Command::Ttl {
                key: b"k",
                unit: TtlUnit::Seconds,
            },
            ":100\r\n",
        ),
        (
            set(
                b"k",
                b"v4",
                SetOptions {
                    expiry: SetExpiry::KeepTtl,
                    ..SetOptions::default()
                },
            ),
            "+OK\r\n",
        ),
        (Command::Get { key: b"k" }, "$2\r\nv4\r\n"),
        (
            Command::MSet {
                pairs: &[(b"a", b"1"), (b"b", b"2")],
            },
            "+OK\r\n",
        ),
        (
            Command::MGet {
                keys: &[b"a", b"nothing", b"b"],
            },
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n",
        ),
        (Command::IncrBy { key: b"a", by: -3 }, ":-2\r\n"),
        (
            Command::Expire {
                key: b"a",
                ttl: 5000,
                unit: TtlUnit::Millis,
            },
            ":1\r\n",
        ),
        (
            Command::Exists {
                keys: &[b"a", b"a", b"nothing"],
            },
            ":2\r\n",
        ),
        (Command::GetDel { key: b"b" }, "$1\r\n2\r\n"),
        (
            Command::Del {
                keys: &[b"a", b"b", b"k"],
            },
            ":2\r\n",
        ),
        (Command::Hello { protover: 3 }, "%"),
    ];
    let mut input = bytes::BytesMut::new();
    let mut expected = String::new();
    for (command, reply) in &commands {
        command.encode(&mut input);
        expected.push_str(reply);
    }
    let (reply, closed) = exchange(&server, &input).await;
    assert!(!closed);
    assert!(
        reply.starts_with(&expected),
        "expected\n{expected:?}\ngot\n{reply:?}"
    );
    assert!(
        reply.contains("proto\r\n:3\r\n"),
        "HELLO 3 switched: {reply:?}"
    );
}

#[tokio::test]
async fn an_http_request_sent_to_the_resp_port_runs_nothing_and_is_disconnected() {
    let server = start().await;
    // A browser made to POST to the RESP port: the body is a command.
    let post = b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1:7379\r\nContent-Type: text/plain\r\n\
                 Content-Length: 18\r\n\r\nSET xproto pwned\r\n";
    let (reply, closed) = exchange(&server, post).await;
    assert_eq!((reply.as_str(), closed), ("", true));
    let (reply, closed) = exchange(
        &server,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nSET xproto pwned\r\n",
    )
    .await;
    assert_eq!((reply.as_str(), closed), ("", true));
    let (reply, closed) = exchange(&server, b"Host: evil\r\nSET xproto pwned\r\n").await;
    assert_eq!((reply.as_str(), closed), ("", true));
    assert_eq!(server.shared.store.get(b"xproto"), None);
    // Commands that only share a word with HTTP are still commands.
    let (reply, closed) = exchange(&server, b"SET get post\r\nGET get\r\nGET HTTP/1.1\r\n").await;
    assert_eq!(reply, "+OK\r\n$4\r\npost\r\n$-1\r\n");
    assert!(!closed);
}

#[tokio::test]
async fn wrong_passwords_are_counted_logged_and_close_the_connection_after_the_limit() {
    let server = start_with(|config| {
        config.requirepass = Some("s3cret".into());
        config.max_auth_failures = 3;
    })
    .await;
    // 10,000 pipelined guesses: three answers, then the connection is closed.
    let guesses: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("AUTH guess{i}\r\n").into_bytes())
        .collect();
    let (reply, closed) = exchange(&server, &guesses).await;
    let wrong = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(reply, wrong.repeat(3));
    assert!(closed);
    assert_eq!(server.shared.auth_log.failures(), 3);
    // Below the limit the connection stays usable, and the right password works.
    let (reply, closed) = exchange(&server, b"AUTH nope\r\nAUTH default s3cret\r\nPING\r\n").await;
    assert_eq!(reply, format!("{wrong}+OK\r\n+PONG\r\n"));
    assert!(!closed);
    // INFO and ACL LOG report them; the log groups one client's failures.
    let mut c = connect_url(&format!("redis://:s3cret@{}/", server.resp_addr)).await;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(info.contains("acl_access_denied_auth:4\r\n"), "{info}");
    let (status, metrics) = crate::http::http(
        server.http_addr,
        "GET",
        "/metrics",
        &["Authorization: Bearer s3cret"],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line == "quorra_auth_failures_total 4"),
        "{metrics}"
    );
    let redis::Value::Array(entries) = ok(&mut c, &["ACL", "LOG"]).await else {
        panic!("ACL LOG is an array");
    };
    assert_eq!(entries.len(), 2);
    let redis::Value::Array(newest) = &entries[0] else {
        panic!("an entry is a map (flat in RESP2)")
    };
    assert_eq!(newest[0], bulk("count"));
    assert_eq!(newest[1], int(1));
    assert_eq!(newest[3], bulk("auth"));
    assert_eq!(newest[9], bulk("default"));
    let redis::Value::Array(oldest) = &entries[1] else {
        panic!()
    };
    assert_eq!(oldest[1], int(3));
    assert_eq!(
        ok(&mut c, &["ACL", "LOG", "1"])
            .await
            .as_sequence()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ok(&mut c, &["ACL", "WHOAMI"]).await, bulk("default"));
    assert_eq!(
        err(&mut c, &["ACL", "LOG", "-1"]).await,
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        ok(&mut c, &["ACL", "LOG", "RESET"]).await,
        redis::Value::Okay
    );
    assert_eq!(
        ok(&mut c, &["ACL", "LOG"]).await,
        redis::Value::Array(vec![])
    );
}
