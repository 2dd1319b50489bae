//! Connection and server commands, authentication, RESP3, pipelining.

use redis::Value;

use crate::common::*;

#[tokio::test]
async fn ping_echo_select_time() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(
        ok(&mut c, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
    assert_eq!(ok(&mut c, &["PING", "hi"]).await, bulk("hi"));
    assert_eq!(
        err(&mut c, &["PING", "a", "b"]).await,
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(ok(&mut c, &["ECHO", "x y"]).await, bulk("x y"));
    assert_eq!(ok(&mut c, &["SELECT", "15"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["SELECT", "0"]).await, Value::Okay);
    assert_eq!(
        err(&mut c, &["SELECT", "16"]).await,
        "ERR DB index is out of range"
    );
    assert_eq!(
        err(&mut c, &["SELECT", "x"]).await,
        "ERR value is not an integer or out of range"
    );
    let Value::Array(time) = ok(&mut c, &["TIME"]).await else {
        panic!()
    };
    let Value::BulkString(secs) = &time[0] else {
        panic!()
    };
    let secs: u64 = std::str::from_utf8(secs).unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(now) <= 2);
    assert_eq!(
        err(&mut c, &["NOSUCH", "a"]).await,
        "ERR unknown command 'NOSUCH', with args beginning with: 'a'"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn requirepass_gates_commands_until_auth() {
    let server = start_with(|config| config.requirepass = Some("s3cret".into())).await;
    let mut c = connect(&server).await;
    assert_eq!(
        err(&mut c, &["GET", "k"]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err(&mut c, &["PING"]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err(&mut c, &["AUTH", "wrong"]).await,
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        err(&mut c, &["AUTH", "other", "s3cret"]).await,
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(ok(&mut c, &["AUTH", "s3cret"]).await, Value::Okay);
    assert_eq!(ok(&mut c, &["SET", "k", "v"]).await, Value::Okay);
    // RESET takes the authentication away again.
    ok(&mut c, &["RESET"]).await;
    assert_eq!(
        err(&mut c, &["GET", "k"]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(
        ok(&mut c, &["AUTH", "default", "s3cret"]).await,
        Value::Okay
    );

    // The client library authenticates from the URL, with HELLO in RESP3.
    let mut url_client = connect_url(&format!(
        "redis://:s3cret@{}/?protocol=resp3",
        server.resp_addr
    ))
    .await;
    assert_eq!(ok(&mut url_client, &["GET", "k"]).await, bulk("v"));
    let info = server
        .shared
        .counters
        .rejected_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(info >= 2, "NOAUTH refusals count as rejected calls");
    server.shutdown().await;
}

#[tokio::test]
async fn auth_without_a_password_configured() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(
        err(&mut c, &["AUTH", "x"]).await,
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    );
    assert_eq!(
        ok(&mut c, &["AUTH", "default", "anything"]).await,
        Value::Okay
    );
    server.shutdown().await;
}

#[tokio::test]
async fn hello_switches_protocol_and_resp3_types_arrive() {
    let server = start_with(|config| config.requirepass = Some("pw".into())).await;
    let mut c = connect(&server).await;
    assert_eq!(
        err(&mut c, &["HELLO", "4"]).await,
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        err(&mut c, &["HELLO", "three"]).await,
        "ERR Protocol version is not an integer or out of range"
    );
    assert!(
        err(&mut c, &["HELLO", "3"])
            .await
            .starts_with("NOAUTH HELLO must be called with the client already authenticated")
    );
    let Value::Map(hello) = ok(
        &mut c,
        &["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "tester"],
    )
    .await
    else {
        panic!("HELLO 3 replies with a map")
    };
    assert!(hello.contains(&(bulk("proto"), int(3))));
    // Clients enable what Redis 7.4 supports (client-side caching) on these; quorra's
    // own version is beside them.
    assert!(hello.contains(&(bulk("server"), bulk("redis"))));
    assert!(hello.contains(&(bulk("version"), bulk("7.4.0"))));
    assert!(
        hello
            .iter()
            .any(|(name, _)| *name == bulk("quorra_version"))
    );
    assert_eq!(ok(&mut c, &["CLIENT", "GETNAME"]).await, bulk("tester"));
    // RESP3 replies: null, map, set, verbatim text.
    assert_eq!(ok(&mut c, &["GET", "missing"]).await, Value::Nil);
    assert!(matches!(
        ok(&mut c, &["CONFIG", "GET", "maxmemory"]).await,
        Value::Map(_)
    ));
    let Value::Array(info) = ok(&mut c, &["COMMAND", "INFO", "get"]).await else {
        panic!()
    };
    let Value::Array(get) = &info[0] else {
        panic!()
    };
    assert!(
        matches!(&get[2], Value::Set(flags) if flags.contains(&Value::SimpleString("readonly".into())))
    );
    assert!(matches!(
        ok(&mut c, &["INFO", "server"]).await,
        Value::VerbatimString { .. }
    ));
    // Back to RESP2: maps are flat arrays again.
    let Value::Array(flat) = ok(&mut c, &["HELLO", "2"]).await else {
        panic!("HELLO 2 replies with an array")
    };
    assert_eq!(flat.len(), 16, "eight fields and their values");
    server.shutdown().await;
}

#[tokio::test]
async fn client_subcommands() {
    let server = start().await;
    let mut c = connect(&server).await;
    let Value::Int(id) = ok(&mut c, &["CLIENT", "ID"]).await else {
        panic!()
    };
    assert_eq!(ok(&mut c, &["CLIENT", "GETNAME"]).await, Value::Nil);
    assert_eq!(
        ok(&mut c, &["CLIENT", "SETNAME", "worker-1"]).await,
        Value::Okay
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "SETNAME", "has space"]).await,
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        ok(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "mylib"]).await,
        Value::Okay
    );
    assert_eq!(
        ok(&mut c, &["CLIENT", "SETINFO", "LIB-VER", "1.2"]).await,
        Value::Okay
    );
    let Value::BulkString(line) = ok(&mut c, &["CLIENT", "INFO"]).await else {
        panic!()
    };
    let line = String::from_utf8(line).unwrap();
    assert!(line.starts_with(&format!("id={id} ")), "{line}");
    assert!(
        line.contains(" name=worker-1 ") && line.contains("lib-name=mylib lib-ver=1.2"),
        "{line}"
    );
    assert!(line.contains(" cmd=client "), "{line}");
    let mut other = connect(&server).await;
    let Value::BulkString(list) = ok(&mut other, &["CLIENT", "LIST"]).await else {
        panic!()
    };
    assert_eq!(String::from_utf8(list).unwrap().lines().count(), 2);
    let Value::BulkString(mine) = ok(&mut other, &["CLIENT", "LIST", "ID", &id.to_string()]).await
    else {
        panic!()
    };
    assert!(String::from_utf8(mine).unwrap().contains("name=worker-1"));
    assert_eq!(
        err(&mut c, &["CLIENT", "FLY"]).await,
        "ERR unknown subcommand 'FLY'. Try CLIENT HELP."
    );
    assert_eq!(
        err(&mut c, &["CLIENT", "SETNAME"]).await,
        "ERR wrong number of arguments for 'client|setname' command"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn command_info_config() {
    let server = start().await;
    let mut c = connect(&server).await;
    let Value::Int(count) = ok(&mut c, &["COMMAND", "COUNT"]).await else {
        panic!()
    };
    assert_eq!(count as usize, quorra_node::commands::COMMANDS.len());
    let Value::Array(info) = ok(&mut c, &["COMMAND", "INFO", "set", "nosuch"]).await else {
        panic!()
    };
    let Value::Array(set) = &info[0] else {
        panic!()
    };
    assert_eq!(&set[..2], &[bulk("set"), int(-3)]);
    assert_eq!(&set[3..6], &[int(1), int(1), int(1)]);
    assert_eq!(info[1], Value::Nil);
    let Value::Array(docs) = ok(&mut c, &["COMMAND", "DOCS", "get"]).await else {
        panic!()
    };
    assert_eq!(docs[0], bulk("get"));

    let Value::BulkString(text) = ok(&mut c, &["INFO"]).await else {
        panic!("RESP2 INFO is a bulk string")
    };
    let text = String::from_utf8(text).unwrap();
    for field in [
        "redis_version:",
        "used_memory:",
        "maxmemory:",
        "connected_clients:",
        "keyspace_hits:",
        "keyspace_misses:",
        "evicted_keys:",
        "expired_keys:",
        "total_commands_processed:",
        "rejected_calls:",
        "used_cpu_sys:",
        "used_cpu_user:",
    ] {
        assert!(text.contains(field), "INFO lacks {field}");
    }
    let Value::BulkString(memory) = ok(&mut c, &["INFO", "memory"]).await else {
        panic!()
    };
    let memory = String::from_utf8(memory).unwrap();
    assert!(
        memory.starts_with("# Memory") && !memory.contains("# Server"),
        "{memory}"
    );
    // The node runs in this process: burn 100 ms of user time so that there is some.
    let burn = std::time::Instant::now();
    let mut spin = 0u64;
    while burn.elapsed() < std::time::Duration::from_millis(100) {
        spin = std::hint::black_box(spin.wrapping_add(1));
    }
    let Value::BulkString(cpu) = ok(&mut c, &["INFO", "cpu"]).await else {
        panic!()
    };
    let cpu = String::from_utf8(cpu).unwrap();
    let user: f64 = cpu
        .lines()
        .find_map(|line| line.strip_prefix("used_cpu_user:"))
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("{cpu}"));
    assert!(cpu.starts_with("# CPU") && user >= 0.05, "{cpu}");
    server.shutdown().await;
}

#[tokio::test]
async fn config_get_and_set() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(
        ok(
            &mut c,
            &[
                "CONFIG",
                "SET",
                "maxmemory",
                "10mb",
                "maxmemory-policy",
                "noeviction"
            ]
        )
        .await,
        Value::Okay
    );
    assert_eq!(
        ok(&mut c, &["CONFIG", "GET", "maxmemory*"]).await,
        array(vec![
            bulk("maxmemory"),
            bulk("10485760"),
            bulk("maxmemory-policy"),
            bulk("noeviction")
        ])
    );
    assert_eq!(server.shared.store.maxmemory(), 10 << 20);
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "maxmemory", "lots"]).await,
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
    );
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "port", "1"]).await,
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "nosuch", "1"]).await,
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    );
    // A bad pair makes the whole CONFIG SET fail without changing anything.
    assert!(
        err(
            &mut c,
            &["CONFIG", "SET", "timeout", "5", "maxclients", "x"]
        )
        .await
        .starts_with("ERR CONFIG SET failed")
    );
    assert_eq!(
        ok(&mut c, &["CONFIG", "GET", "timeout"]).await,
        array(vec![bulk("timeout"), bulk("0")])
    );
    // requirepass set at run time applies to new connections.
    ok(&mut c, &["CONFIG", "SET", "requirepass", "pw"]).await;
    let mut fresh = connect(&server).await;
    assert_eq!(
        err(&mut fresh, &["GET", "x"]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(
        ok(&mut c, &["GET", "x"]).await,
        Value::Nil,
        "existing connections stay authenticated"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_pipelined_commands() {
    let server = start().await;
    let mut c = connect(&server).await;
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("INCR").arg("counter");
        pipe.cmd("SET").arg(format!("k{i}")).arg(i);
    }
    let replies: Vec<Value> = pipe.query_async(&mut c).await.unwrap();
    assert_eq!(replies.len(), 20_000);
    assert_eq!(replies[19_998], int(10_000));
    assert_eq!(ok(&mut c, &["GET", "k9999"]).await, bulk("9999"));
    assert_eq!(ok(&mut c, &["DBSIZE"]).await, int(10_001));
    server.shutdown().await;
}

#[tokio::test]
async fn quit_closes_after_ok() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    let mut socket = tokio::net::TcpStream::connect(server.resp_addr)
        .await
        .unwrap();
    socket.write_all(b"QUIT\r\nPING\r\n").await.unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"+OK\r\n", "nothing after QUIT runs");
    server.shutdown().await;
}
