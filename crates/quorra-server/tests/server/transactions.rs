//! MULTI ... EXEC through real connections: readers on every node never see part of a
//! transaction, and a transaction past `max-transaction-commands` is refused whole.

use redis::Value;

use crate::cluster::start_cluster_with;
use crate::common::*;

/// Writes `{pair}:a` and `{pair}:b` together in transactions while readers on every
/// node read both with MGET: every read sees both written or neither. A hundred other
/// writes between the two keep the window a torn read would need wide open.
async fn readers_see_whole_transactions(nodes: &[quorra_server::RunningServer]) {
    let mut writer = connect(&nodes[0]).await;
    ok(&mut writer, &["MSET", "{pair}:a", "0", "{pair}:b", "0"]).await;
    let mut readers = Vec::new();
    for node in nodes {
        let mut reader = connect(node).await;
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            loop {
                let Value::Array(values) = ok(&mut reader, &["MGET", "{pair}:a", "{pair}:b"]).await
                else {
                    panic!("MGET answers an array");
                };
                assert_eq!(values[0], values[1], "a read saw part of a transaction");
                reads += 1;
                if values[0] == bulk("200") {
                    return reads;
                }
            }
        }));
    }
    for round in 1..=200 {
        let round = round.to_string();
        let mut transaction = redis::pipe();
        transaction.atomic().cmd("SET").arg("{pair}:a").arg(&round);
        for pad in 0..100 {
            transaction
                .cmd("SET")
                .arg(format!("{{pair}}:pad{pad}"))
                .arg(&round);
        }
        transaction.cmd("SET").arg("{pair}:b").arg(&round);
        let _: Value = transaction.query_async(&mut writer).await.unwrap();
    }
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_part_of_a_transaction_on_a_single_node() {
    let node = start().await;
    readers_see_whole_transactions(std::slice::from_ref(&node)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_on_every_node_never_see_part_of_a_replicated_transaction() {
    let nodes = start_cluster_with(3, |config| config.consistency.replicas = 3).await;
    readers_see_whole_transactions(&nodes).await;
}

#[tokio::test]
async fn a_transaction_past_its_command_limit_is_refused_whole() {
    let node = start_with(|config| config.max_transaction_commands = 10).await;
    let mut con = connect(&node).await;
    let mut commands = vec![vec!["MULTI".to_owned()]];
    commands.extend((0..11).map(|i| vec!["SET".to_owned(), format!("limit:{i}"), "v".to_owned()]));
    commands.push(vec!["EXEC".to_owned()]);
    let mut replies: Vec<redis::RedisResult<Value>> = Vec::new();
    for command in &commands {
        let mut cmd = redis::cmd(&command[0]);
        cmd.arg(&command[1..]);
        replies.push(cmd.query_async(&mut con).await);
    }
    let queued = replies[1..=10]
        .iter()
        .filter(|reply| matches!(reply, Ok(Value::SimpleString(text)) if text == "QUEUED"))
        .count();
    assert_eq!(queued, 10);
    let refusal = replies[11].as_ref().unwrap_err().to_string();
    assert!(
        refusal.contains("transaction too long: at most 10 queued commands"),
        "{refusal}"
    );
    let exec = replies[12].as_ref().unwrap_err().to_string();
    assert!(
        exec.contains("Transaction discarded because of previous errors"),
        "{exec}"
    );
    assert_eq!(ok(&mut con, &["EXISTS", "limit:0"]).await, int(0));
}

/// A client that pipelines a million commands after MULTI at the default limit
/// (100,000): the rest are refused one by one, the server stays responsive to others,
/// and EXEC runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_a_million_commands_is_bounded_by_the_default_limit() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    const COMMANDS: usize = 1_000_000;
    let node = start().await;
    let socket = tokio::net::TcpStream::connect(node.resp_addr)
        .await
        .unwrap();
    let (reader, mut writer) = socket.into_split();
    let sender = tokio::spawn(async move {
        writer.write_all(b"MULTI\r\n").await.unwrap();
        let set = b"*3\r\n$3\r\nSET\r\n$4\r\nmega\r\n$1\r\nv\r\n".repeat(10_000);
        for _ in 0..COMMANDS / 10_000 {
            writer.write_all(&set).await.unwrap();
        }
        writer.write_all(b"EXEC\r\n").await.unwrap();
        writer
    });
    let mut lines = BufReader::new(reader).lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "+OK");
    let (mut queued, mut refused) = (0, 0);
    for _ in 0..COMMANDS {
        let line = lines.next_line().await.unwrap().unwrap();
        match line.as_str() {
            "+QUEUED" => queued += 1,
            "-ERR transaction too long: at most 100000 queued commands (max-transaction-commands)" => {
                refused += 1
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!((queued, refused), (100_000, COMMANDS - 100_000));
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "-EXECABORT Transaction discarded because of previous errors."
    );
    let _writer = sender.await.unwrap();
    let mut other = connect(&node).await;
    assert_eq!(ok(&mut other, &["EXISTS", "mega"]).await, int(0));
    assert_eq!(
        ok(&mut other, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}

#[tokio::test]
async fn a_watched_key_evicted_for_memory_aborts_the_transaction() {
    let node = start_with(|config| config.maxmemory = 2 << 20).await;
    let mut watcher = connect(&node).await;
    let mut filler = connect(&node).await;
    ok(&mut watcher, &["SET", "watched", "v"]).await;
    ok(&mut watcher, &["WATCH", "watched"]).await;
    let value = "x".repeat(10_000);
    for i in 0.. {
        ok(&mut filler, &["SET", &format!("filler:{i}"), &value]).await;
        if ok(&mut filler, &["EXISTS", "watched"]).await == int(0) {
            break;
        }
    }
    ok(&mut watcher, &["MULTI"]).await;
    ok(&mut watcher, &["SET", "after", "1"]).await;
    assert_eq!(ok(&mut watcher, &["EXEC"]).await, Value::Nil);
    assert_eq!(ok(&mut watcher, &["EXISTS", "after"]).await, int(0));
}

/// `quorra bench --transaction` wraps every request in MULTI ... EXEC: against a node
/// and a cluster with copies, every transaction commits and reads see the preload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorra_bench_runs_transactions_against_a_node_and_a_cluster() {
    let single = start().await;
    let cluster = start_cluster_with(3, |config| config.consistency.replicas = 3).await;
    let targets = [
        vec![single.resp_addr.to_string()],
        cluster
            .iter()
            .map(|node| node.resp_addr.to_string())
            .collect(),
    ];
    for target in targets {
        let mut flags: Vec<String> = target
            .iter()
            .flat_map(|addr| ["--target".to_owned(), addr.clone()])
            .collect();
        let workload = "--transaction --preload --keys 100 --requests 2000 -c 4 -P 4 --ratio 1:1:0";
        flags.extend(workload.split(' ').map(str::to_owned));
        let args = quorra_bench::BenchArgs::try_parse_from(flags).unwrap();
        let report = quorra_bench::run(&args).await.unwrap();
        assert_eq!((report.ops, report.errors), (2000, 0), "{target:?}");
        assert_eq!(report.hit_ratio, Some(1.0), "{target:?}");
    }
}
