"""What redis-py applications do with transactions, locks and scripts, run against one
server.

Usage: python3 redis_py.py PORT [PORT ...]

Every port must serve the same data (one server, or the nodes of one cluster); clients
are spread over them. Prints one JSON object per case, {"case": ..., "result": ...},
where the result is what the application would observe (values, replies, exception
types and texts). The suite runs this against Debian's redis-server and against quorra
in the same test and compares the lines (crates/quorra-server/tests/server/compat.rs).

Keys carry a hash tag, so that each case's keys have one primary in a cluster.
"""

import redis
from cases import case, in_threads, run_cases
from redis_py_clients import PORTS, client, observed

def outcome(results):
    """A pipeline's results with exceptions shown by type and text."""
    return [
        {"raised": type(item).__name__, "text": str(item)} if isinstance(item, Exception) else item
        for item in results
    ]


@case
def pipeline_without_transaction():
    pipe = client().pipeline(transaction=False)
    pipe.set("{plain}:a", "1").incr("{plain}:a").get("{plain}:a").delete("{plain}:a")
    return pipe.execute()


@case
def pipeline_transaction():
    pipe = client().pipeline()
    pipe.set("{tx}:a", "1").incr("{tx}:a", 5).get("{tx}:a").set("{tx}:b", "x").mget("{tx}:a", "{tx}:b")
    return pipe.execute()


@case
def transaction_with_a_runtime_error_runs_the_rest():
    r = client()
    pipe = r.pipeline()
    pipe.set("{rt}:s", "abc").incr("{rt}:s").set("{rt}:t", "1")
    return [outcome(pipe.execute(raise_on_error=False)), r.get("{rt}:s"), r.get("{rt}:t")]


@case
def transaction_with_a_queuing_error_runs_nothing():
    r = client()
    pipe = r.pipeline()
    pipe.set("{qe}:a", "1").execute_command("NOSUCHCOMMAND", "{qe}:a").set("{qe}:b", "2")
    return [observed(pipe.execute), r.get("{qe}:a"), r.get("{qe}:b")]


@case
def transaction_with_a_wrong_arity_runs_nothing():
    r = client()
    pipe = r.pipeline()
    pipe.set("{ar}:a", "1").execute_command("GET").set("{ar}:b", "2")
    return [observed(pipe.execute), r.get("{ar}:a")]


@case
def watch_then_a_write_elsewhere_aborts():
    r, other = client(0), client(1)
    r.set("{w}:k", "1")
    with r.pipeline() as pipe:
        pipe.watch("{w}:k")
        before = pipe.get("{w}:k")
        other.set("{w}:k", "2")
        pipe.multi()
        pipe.set("{w}:k", "3")
        aborted = observed(pipe.execute)
    return [before, aborted, r.get("{w}:k")]


@case
def watch_unchanged_runs():
    r = client()
    r.set("{wu}:k", "1")
    with r.pipeline() as pipe:
        pipe.watch("{wu}:k")
        current = int(pipe.get("{wu}:k"))
        pipe.multi()
        pipe.set("{wu}:k", current + 1)
        result = pipe.execute()
    return [result, r.get("{wu}:k")]


@case
def watch_of_a_key_that_expires_aborts():
    r = client()
    r.set("{we}:k", "1", px=50)
    with r.pipeline() as pipe:
        pipe.watch("{we}:k")
        import time

        time.sleep(0.2)
        pipe.multi()
        pipe.set("{we}:other", "x")
        aborted = observed(pipe.execute)
    return [aborted, r.get("{we}:other")]


@case
def eight_threads_incrementing_through_watch_give_the_exact_count():
    client().delete("{count}:n")

    def increment(index):
        r = client(index)
        for _ in range(100):
            r.transaction(lambda pipe: pipe.multi() or pipe.incr("{count}:n"), "{count}:n")

    in_threads(increment)
    return client().get("{count}:n")


@case
def transaction_helper_returns_the_function_value():
    r = client()
    r.set("{th}:balance", "10")

    def withdraw(pipe):
        balance = int(pipe.get("{th}:balance"))
        pipe.multi()
        pipe.set("{th}:balance", balance - 3)
        return balance - 3

    return [r.transaction(withdraw, "{th}:balance", value_from_callable=True), r.get("{th}:balance")]


@case
def errors_outside_and_inside_multi():
    r = client(single_connection_client=True)
    replies = [
        observed(lambda: r.execute_command("EXEC")),
        observed(lambda: r.execute_command("DISCARD")),
        observed(lambda: r.execute_command("MULTI")),
        observed(lambda: r.execute_command("MULTI")),
        observed(lambda: r.execute_command("WATCH", "{err}:k")),
        observed(lambda: r.execute_command("SET", "{err}:k", "v")),
        observed(lambda: r.execute_command("DISCARD")),
        observed(lambda: r.execute_command("GET", "{err}:k")),
        observed(lambda: r.execute_command("UNWATCH")),
    ]
    return replies


@case
def an_empty_transaction():
    r = client(single_connection_client=True)
    return [r.execute_command("MULTI"), r.execute_command("EXEC")]


@case
def lock_acquire_extend_release():
    r = client()
    lock = r.lock("{lock}:resource", timeout=5)
    other = client(1).lock("{lock}:resource", timeout=5)
    acquired = lock.acquire(blocking=False)
    contended = other.acquire(blocking=False)
    extended = lock.extend(5)
    ttl_above_original = r.pttl("{lock}:resource") > 5000
    lock.release()
    after_release = other.acquire(blocking=False)
    other.release()
    return [acquired, contended, extended, ttl_above_original, after_release, r.exists("{lock}:resource")]


@case
def lock_released_by_another_owner_raises():
    r = client()
    lock = r.lock("{lock2}:resource", timeout=5)
    lock.acquire(blocking=False)
    r.set("{lock2}:resource", "someone else's token")
    return [observed(lock.release), observed(lambda: lock.extend(1)), r.get("{lock2}:resource")]


@case
def registered_script_runs_by_sha():
    r = client()
    incr_by = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    first = incr_by(keys=["{script}:n"], args=[5])
    second = incr_by(keys=["{script}:n"], args=[2])
    return [first, second, r.script_exists(incr_by.sha), client(2).get("{script}:n")]


@case
def eight_threads_incrementing_through_a_script_give_the_exact_count():
    client().delete("{lua-count}:n")
    script = "local n = tonumber(redis.call('get', KEYS[1]) or '0') redis.call('set', KEYS[1], n + 1) return n + 1"

    def increment(index):
        r = client(index)
        counter = r.register_script(script)
        for _ in range(100):
            counter(keys=["{lua-count}:n"])

    in_threads(increment)
    return client().get("{lua-count}:n")


@case
def script_replies_and_errors():
    r = client()
    r.set("{se}:s", "abc")
    scripts = [
        ("return {1, 'two', {3, false}, nil, 5}", 0),
        ("return {ok = 'fine'}", 0),
        ("return redis.error_reply('custom failure')", 0),
        ("return redis.call('incr', KEYS[1])", 1, "{se}:s"),
        ("return redis.pcall('incr', KEYS[1])", 1, "{se}:s"),
        ("undefined_global = 1", 0),
        ("return os.time()", 0),
        ("return redis.call('nosuchcommand')", 0),
        ("return redis.call('multi')", 0),
        ("error('custom error')", 0),
        ("return 3.99", 0),
        ("return redis.sha1hex('')", 0),
        ("if then", 0),
    ]
    results = [observed(lambda s=s: r.eval(*s)) for s in scripts]
    results.append(observed(lambda: r.evalsha("0" * 40, 0)))
    results.append(observed(lambda: r.eval("return 1", -1)))
    results.append(observed(lambda: r.eval("return 1", 2, "{se}:a")))
    results.append(observed(lambda: r.eval_ro("return redis.call('set', KEYS[1], 1)", 1, "{se}:a")))
    return results


@case
def a_script_is_atomic_and_its_writes_stay():
    r = client()
    script = "redis.call('set', KEYS[1], 'a') redis.call('set', KEYS[2], 'b') return redis.call('mget', KEYS[1], KEYS[2])"
    return [r.eval(script, 2, "{atomic}:1", "{atomic}:2"), client(1).mget("{atomic}:1", "{atomic}:2")]


@case
def a_script_that_errors_halfway_keeps_the_writes_before_the_error():
    r = client()
    r.set("{half}:s", "not a number")
    script = "redis.call('set', KEYS[1], 'written') redis.call('incr', KEYS[2]) redis.call('set', KEYS[3], 'never')"
    failed = observed(lambda: r.eval(script, 3, "{half}:1", "{half}:s", "{half}:3"))
    return [failed, client(1).get("{half}:1"), client(2).get("{half}:3")]


def in_database(db, index=0):
    """A client connected with a database number in its URL, as cache settings name it."""
    port = PORTS[index % len(PORTS)]
    return redis.Redis.from_url(f"redis://127.0.0.1:{port}/{db}", decode_responses=True)


@case
def connecting_with_a_database_number_keeps_its_keys_apart():
    one, also_one, zero = in_database(1), in_database(1, index=1), client(2)
    one.set("{db}:k", "in 1", ex=100)
    zero.set("{db}:k", "in 0")
    seen = [one.get("{db}:k"), also_one.get("{db}:k"), zero.get("{db}:k")]
    listed = [sorted(one.keys("{db}:*")), sorted(also_one.scan_iter("{db}:*")), one.exists("{db}:k")]
    pipe = also_one.pipeline()
    pipe.set("{db}:t", "1").incr("{db}:t")
    transaction = [pipe.execute(), zero.get("{db}:t"), one.get("{db}:t")]
    script = one.eval("return {KEYS[1], redis.call('get', KEYS[1])}", 1, "{db}:t")
    return [seen, listed, transaction, script]


@case
def move_flushdb_and_info_keyspace_per_database():
    one, two, zero = in_database(11), in_database(12, index=1), client(2)
    one.set("{mv}:k", "v", ex=100)
    two.set("{mv}:taken", "there")
    one.set("{mv}:taken", "here")
    moved = [
        one.move("{mv}:k", 12),
        one.move("{mv}:k", 12),
        one.move("{mv}:taken", 12),
        observed(lambda: one.move("{mv}:taken", 11)),
        observed(lambda: one.move("{mv}:taken", 16)),
    ]
    after = [one.get("{mv}:k"), two.get("{mv}:k"), 0 < two.ttl("{mv}:k") <= 100, zero.get("{mv}:k")]
    copied = [one.copy("{mv}:taken", "{mv}:copy", destination_db=13), in_database(13).get("{mv}:copy")]
    keyspace = {db: {"keys": counts["keys"], "expires": counts["expires"]}
                for db, counts in zero.info("keyspace").items() if db in ("db11", "db12", "db13")}
    in_database(13).flushdb()
    flushed = [in_database(13).dbsize(), two.dbsize(), one.get("{mv}:taken")]
    return [moved, after, copied, keyspace, flushed]


@case
def selecting_a_database_out_of_range():
    r = client()
    refused = [observed(lambda arg=arg: r.execute_command("SELECT", arg)) for arg in ("16", "-1", "x")]
    at_connect = observed(lambda: redis.Redis(host="127.0.0.1", port=PORTS[0], db=16).ping())
    return [refused, at_connect, r.execute_command("SELECT", "15")]


if __name__ == "__main__":
    run_cases(observed)
