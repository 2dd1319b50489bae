//! Lua scripts through real connections: a script past its time budget makes other
//! clients get BUSY and is stopped by SCRIPT KILL (unless it wrote), and in a cluster a
//! script runs at its keys' primary, may use only the keys it declares, and is refused
//! whole when they have several owners.

use std::time::Duration;

use redis::Value;

use crate::cluster::{key_of_another_owner, start_cluster_with};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_its_budget_gets_other_clients_busy_and_script_kill_stops_it() {
    let node = start_with(|config| config.busy_reply_threshold = Duration::from_millis(100)).await;
    let mut looping = connect(&node).await;
    let endless =
        tokio::spawn(async move { err(&mut looping, &["EVAL", "while true do end", "0"]).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut other = connect(&node).await;
    assert_eq!(
        err(&mut other, &["GET", "k"]).await,
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    );
    assert_eq!(ok(&mut other, &["SCRIPT", "KILL"]).await, Value::Okay);
    let killed = endless.await.unwrap();
    assert!(
        killed.starts_with("ERR Script killed by user with SCRIPT KILL... script: "),
        "{killed}"
    );
    assert_eq!(
        ok(&mut other, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
    assert_eq!(
        err(&mut other, &["SCRIPT", "KILL"]).await,
        "NOTBUSY No scripts in execution right now."
    );
    // A script that wrote cannot be stopped: it runs to its end (here, one second).
    let mut writing = connect(&node).await;
    let script = "redis.call('set', KEYS[1], 'w') \
                  local start = tonumber(redis.call('time')[1]) \
                  while tonumber(redis.call('time')[1]) < start + 2 do end return 1";
    let written = tokio::spawn(async move { ok(&mut writing, &["EVAL", script, "1", "w"]).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        err(&mut other, &["SCRIPT", "KILL"])
            .await
            .starts_with("UNKILLABLE Sorry the script already executed write commands")
    );
    assert_eq!(written.await.unwrap(), int(1));
    assert_eq!(ok(&mut other, &["GET", "w"]).await, bulk("w"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_script_runs_at_its_keys_primary_and_uses_only_its_declared_keys() {
    let nodes = start_cluster_with(3, |config| config.consistency.replicas = 3).await;
    let view = crate::cluster::view(&nodes[0]);
    let other = &key_of_another_owner(&view, "key:0");
    for node in &nodes {
        let mut con = connect(node).await;
        let script = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])";
        assert_eq!(
            ok(&mut con, &["EVAL", script, "1", "{s}:a", "from a script"]).await,
            bulk("from a script")
        );
        assert_eq!(
            err(&mut con, &["EVAL", "return 1", "2", "key:0", other]).await,
            "CROSSSLOT Keys in request don't hash to the same node"
        );
        let undeclared = err(
            &mut con,
            &[
                "EVAL",
                "return redis.call('get', 'elsewhere')",
                "1",
                "{s}:a",
            ],
        )
        .await;
        assert!(
            undeclared.starts_with(
                "ERR Script attempted to access key 'elsewhere', which is not in its KEYS"
            ),
            "{undeclared}"
        );
        // A script without keys runs where it is sent.
        assert_eq!(
            ok(&mut con, &["EVAL", "return 'anywhere'", "0"]).await,
            bulk("anywhere")
        );
    }
}
