"""What redis-py applications do with hashes, lists, sets and sorted sets, run against one
server (or the nodes of one cluster).

Usage: python3 collections.py PORT [PORT ...]

Prints one JSON object per case, like redis_py.py; the suite runs it against Debian's
redis-server (7.0) and against quorra and compares the lines. Hash field TTLs (Redis
7.4) are newer than that redis-server, so they are checked by session_store.py
instead. Sets are returned sorted: their order is the server's own.

Keys carry a hash tag, so that each case's keys have one primary in a cluster.
"""

from cases import case, run_cases
from redis_py_clients import client, observed


@case
def object_cache_on_a_hash():
    r, other = client(), client(1)
    r.hset("{user}:1", mapping={"name": "ada", "visits": "0", "plan": "free"})
    other.hincrby("{user}:1", "visits", 3)
    other.hincrbyfloat("{user}:1", "balance", "2.5")
    r.hsetnx("{user}:1", "plan", "pro")
    r.hsetnx("{user}:1", "since", "2024")
    r.hdel("{user}:1", "nope", "since")
    return [
        sorted(r.hgetall("{user}:1").items()),
        other.hmget("{user}:1", "name", "missing", "visits"),
        sorted(r.hkeys("{user}:1")),
        sorted(r.hvals("{user}:1")),
        [r.hlen("{user}:1"), r.hexists("{user}:1", "plan"), r.hstrlen("{user}:1", "name")],
        [r.type("{user}:1"), r.hgetall("{user}:none"), r.hget("{user}:none", "f")],
        observed(lambda: r.hincrby("{user}:1", "name", 1)),
        observed(lambda: r.hincrbyfloat("{user}:1", "name", 1)),
        observed(lambda: r.execute_command("HSET", "{user}:1", "odd")),
        sorted(r.hscan("{user}:1", match="*a*")[1].items()),
        [r.hrandfield("{user}:1") in r.hkeys("{user}:1"), len(r.hrandfield("{user}:1", 10)),
         len(r.hrandfield("{user}:1", -7)), len(r.hrandfield("{user}:1", 2, withvalues=True))],
    ]


@case
def a_hash_whose_last_field_goes_is_deleted():
    r = client()
    r.hset("{gone}:h", "only", "1")
    return [r.hdel("{gone}:h", "only"), r.exists("{gone}:h"), r.type("{gone}:h"), r.hlen("{gone}:h")]


@case
def cache_tags_on_sets():
    # Laravel-style tagged cache: each tag is a set of the keys it covers; flushing a
    # tag deletes its keys and the tag.
    r, other = client(), client(1)
    for key, tags in {"{tags}:post:1": ["posts", "user:7"], "{tags}:post:2": ["posts"],
                      "{tags}:profile:7": ["user:7"]}.items():
        other.set(key, "cached")
        for tag in tags:
            r.sadd("{tags}:tag:" + tag, key)
    covered = sorted(r.smembers("{tags}:tag:user:7"))
    both = sorted(r.sinter("{tags}:tag:posts", "{tags}:tag:user:7"))
    either = sorted(r.sunion("{tags}:tag:posts", "{tags}:tag:user:7"))
    only_posts = sorted(r.sdiff("{tags}:tag:posts", "{tags}:tag:user:7"))
    stored = [r.sunionstore("{tags}:all", "{tags}:tag:posts", "{tags}:tag:user:7"),
              sorted(r.smembers("{tags}:all")),
              r.sinterstore("{tags}:none", "{tags}:tag:posts", "{tags}:missing"),
              r.exists("{tags}:none")]
    flushed = r.delete(*r.smembers("{tags}:tag:user:7"), "{tags}:tag:user:7")
    after = [r.get("{tags}:post:1"), r.get("{tags}:post:2"), r.exists("{tags}:tag:user:7")]
    membership = [r.sismember("{tags}:tag:posts", "{tags}:post:2"),
                  r.smismember("{tags}:tag:posts", ["{tags}:post:1", "{tags}:nope"]),
                  r.scard("{tags}:tag:posts"), r.srem("{tags}:tag:posts", "{tags}:post:1", "x")]
    return [covered, both, either, only_posts, stored, flushed, after, membership]


@case
def set_moves_pops_and_random_members():
    r = client()
    r.sadd("{sm}:a", "1", "2", "3")
    moved = [r.smove("{sm}:a", "{sm}:b", "2"), r.smove("{sm}:a", "{sm}:b", "nope"),
             sorted(r.smembers("{sm}:a")), sorted(r.smembers("{sm}:b"))]
    popped = r.spop("{sm}:a", 5)
    random = [r.srandmember("{sm}:b"), r.srandmember("{sm}:b", -3), r.srandmember("{sm}:none"),
              r.srandmember("{sm}:none", 2), r.spop("{sm}:none")]
    return [moved, sorted(popped), r.exists("{sm}:a"), random,
            observed(lambda: r.spop("{sm}:b", -1)), sorted(r.sscan("{sm}:b")[1])]


@case
def leaderboard_on_a_sorted_set():
    r, other = client(), client(1)
    r.zadd("{board}", {"ada": 120, "bob": 95, "cy": 120, "dee": 40})
    other.zincrby("{board}", 10, "bob")
    other.zadd("{board}", {"dee": 30}, gt=True)
    other.zadd("{board}", {"eve": 5}, xx=True)
    changed = r.zadd("{board}", {"dee": 50, "fay": 1}, ch=True)
    return [
        r.zrevrange("{board}", 0, 2, withscores=True),
        r.zrange("{board}", 0, -1),
        [r.zrevrank("{board}", "bob"), r.zrank("{board}", "ada"), r.zrank("{board}", "nope")],
        [r.zscore("{board}", "ada"), r.zscore("{board}", "nope"), r.zmscore("{board}", ["dee", "x"])],
        [r.zcard("{board}"), r.zcount("{board}", 50, "+inf"), r.zcount("{board}", "(50", 120)],
        r.zrangebyscore("{board}", "-inf", 100, withscores=True),
        r.zrevrangebyscore("{board}", "+inf", "(50", start=1, num=2),
        r.zrange("{board}", "(120", "-inf", byscore=True, desc=True, offset=0, num=2),
        changed,
        r.zadd("{board}", {"ada": 1}, incr=True),
        r.zadd("{board}", {"ada": 1}, incr=True, nx=True),
    ]


@case
def sorted_set_ranges_by_lex_and_removals():
    r = client()
    r.zadd("{lex}", {m: 0 for m in ["a", "b", "c", "d", "e", "f"]})
    ranges = [r.zrangebylex("{lex}", "[b", "(e"), r.zrevrangebylex("{lex}", "+", "[d"),
              r.zrangebylex("{lex}", "-", "+", start=2, num=2), r.zlexcount("{lex}", "(a", "[c"),
              r.zrange("{lex}", "[c", "+", bylex=True)]
    removed = [r.zremrangebylex("{lex}", "-", "[a"), r.zremrangebyrank("{lex}", -1, -1),
               r.zremrangebyscore("{lex}", 1, 2), r.zrange("{lex}", 0, -1)]
    r.zadd("{pop}", {"x": 1, "y": 2, "z": 3})
    pops = [r.zpopmin("{pop}"), r.zpopmax("{pop}", 5), r.exists("{pop}"), r.zpopmin("{pop}")]
    stored = [r.zadd("{lex}:src", {"p": 1, "q": 2, "r": 3}),
              r.zrangestore("{lex}:dst", "{lex}:src", 1, -1),
              r.zrange("{lex}:dst", 0, -1, withscores=True),
              r.zrangestore("{lex}:dst", "{lex}:src", 10, 20), r.exists("{lex}:dst")]
    return [ranges, removed, pops, stored,
            sorted(r.zscan("{lex}")[1]), r.zrandmember("{lex}", -2, withscores=False).__len__()]


@case
def sorted_set_bad_input():
    r = client()
    return [
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "nan", "m")),
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "abc", "m")),
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "NX", "XX", "1", "m")),
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "GT", "LT", "1", "m")),
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "INCR", "1", "a", "2", "b")),
        observed(lambda: r.execute_command("ZADD", "{bad}:z", "1")),
        r.zadd("{bad}:z", {"inf": "+inf", "ninf": "-inf"}),
        observed(lambda: r.zincrby("{bad}:z", "-inf", "inf")),
        observed(lambda: r.zrangebyscore("{bad}:z", "x", 1)),
        observed(lambda: r.zrangebylex("{bad}:z", "a", "+")),
        observed(lambda: r.execute_command("ZRANGE", "{bad}:z", 0, 1, "LIMIT", 0, 1)),
        observed(lambda: r.execute_command("ZRANGE", "{bad}:z", "-", "+", "BYLEX", "WITHSCORES")),
        # Infinite scores as text: JSON has no infinity.
        [(member, repr(score)) for member, score in r.zrange("{bad}:z", 0, -1, withscores=True)],
    ]


@case
def a_work_queue_and_a_recent_items_list():
    r, other = client(), client(1)
    r.rpush("{q}:jobs", "a", "b", "c")
    other.lpush("{q}:jobs", "z")
    queue = [r.lrange("{q}:jobs", 0, -1), r.llen("{q}:jobs"), r.lpop("{q}:jobs"), r.rpop("{q}:jobs", 2),
             r.lpop("{q}:jobs", 0), r.lpop("{q}:none"), r.lpop("{q}:none", 2), r.rpushx("{q}:none", "x"),
             r.lpushx("{q}:jobs", "y"), r.lrange("{q}:jobs", 0, -1)]
    r.delete("{q}:recent")
    for item in ["p1", "p2", "p3", "p4", "p5", "p6"]:
        pipe = r.pipeline()
        pipe.lpush("{q}:recent", item).ltrim("{q}:recent", 0, 3)
        pipe.execute()
    recent = [r.lrange("{q}:recent", 0, -1), r.lrange("{q}:recent", -2, 100), r.lrange("{q}:recent", 5, 1),
              r.lindex("{q}:recent", -1), r.lindex("{q}:recent", 9)]
    r.rpush("{q}:l", "a", "b", "a", "c", "a")
    edits = [r.lset("{q}:l", -1, "A"), observed(lambda: r.lset("{q}:l", 9, "x")),
             observed(lambda: r.lset("{q}:none", 0, "x")), r.linsert("{q}:l", "before", "c", "C"),
             r.linsert("{q}:l", "after", "nope", "x"), r.linsert("{q}:none", "after", "a", "x"),
             observed(lambda: r.execute_command("LINSERT", "{q}:l", "MIDDLE", "a", "x")),
             r.lpos("{q}:l", "a"), r.lpos("{q}:l", "a", rank=-1), r.lpos("{q}:l", "a", count=0),
             r.lpos("{q}:l", "a", rank=2, count=5, maxlen=3), r.lpos("{q}:l", "zz"),
             observed(lambda: r.lpos("{q}:l", "a", rank=0)), observed(lambda: r.lpos("{q}:l", "a", count=-1)),
             r.lrem("{q}:l", -1, "a"), r.lrem("{q}:l", 0, "b"), r.lrange("{q}:l", 0, -1)]
    r.rpush("{q}:src", "1", "2", "3")
    moved = [r.lmove("{q}:src", "{q}:dst", "LEFT", "RIGHT"), r.rpoplpush("{q}:src", "{q}:dst"),
             r.lmove("{q}:src", "{q}:src", "RIGHT", "LEFT"), r.lrange("{q}:src", 0, -1), r.lrange("{q}:dst", 0, -1),
             r.lmove("{q}:none", "{q}:dst", "LEFT", "LEFT"), r.ltrim("{q}:src", 5, 10), r.exists("{q}:src"),
             r.type("{q}:dst"), observed(lambda: r.lpop("{q}:dst", -1))]
    return [queue, recent, edits, moved]


@case
def every_family_refuses_a_key_of_another_type():
    r = client()
    r.set("{wt}:s", "v")
    r.hset("{wt}:h", "f", "v")
    r.sadd("{wt}:set", "m")
    r.zadd("{wt}:z", {"m": 1})
    r.rpush("{wt}:l", "e")
    calls = [
        lambda: r.lpush("{wt}:h", "x"), lambda: r.lrange("{wt}:s", 0, -1), lambda: r.get("{wt}:l"),
        lambda: r.sadd("{wt}:l", "m"), lambda: r.lmove("{wt}:l", "{wt}:set", "LEFT", "LEFT"),
        lambda: r.get("{wt}:h"), lambda: r.append("{wt}:set", "x"), lambda: r.incr("{wt}:z"),
        lambda: r.strlen("{wt}:h"), lambda: r.getrange("{wt}:z", 0, 1), lambda: r.getdel("{wt}:h"),
        lambda: r.set("{wt}:h", "x", get=True),
        lambda: r.hget("{wt}:s", "f"), lambda: r.hset("{wt}:set", "f", "v"), lambda: r.hgetall("{wt}:z"),
        lambda: r.sadd("{wt}:h", "m"), lambda: r.smembers("{wt}:s"), lambda: r.sinter("{wt}:set", "{wt}:z"),
        lambda: r.zadd("{wt}:set", {"m": 1}), lambda: r.zrange("{wt}:h", 0, -1), lambda: r.zscore("{wt}:s", "m"),
        lambda: r.smove("{wt}:set", "{wt}:h", "m"),
    ]
    refused = [observed(call) for call in calls]
    generic = [r.mget("{wt}:s", "{wt}:h", "{wt}:set"), [r.type(k) for k in ("{wt}:s", "{wt}:h", "{wt}:set", "{wt}:z", "{wt}:l", "{wt}:no")],
               r.set("{wt}:h", "overwritten"), r.get("{wt}:h"), r.exists("{wt}:set", "{wt}:z"),
               r.expire("{wt}:z", 100), 0 < r.ttl("{wt}:z") <= 100, r.rename("{wt}:set", "{wt}:set2"),
               sorted(r.smembers("{wt}:set2")), r.copy("{wt}:z", "{wt}:z2"), r.zrange("{wt}:z2", 0, -1, withscores=True),
               r.object("encoding", "{wt}:z2") in ("listpack", "skiplist", "ziplist")]
    return [refused, generic]


@case
def scan_filters_by_type():
    r = client()
    r.set("{scan}:string", "v")
    r.hset("{scan}:hash", "f", "v")
    r.sadd("{scan}:set", "m")
    r.zadd("{scan}:zset", {"m": 1})
    r.rpush("{scan}:list", "e")
    found = {kind: sorted(key for key in r.scan_iter(match="{scan}:*", _type=kind))
             for kind in ("string", "hash", "list", "set", "zset")}
    return found


if __name__ == "__main__":
    run_cases(observed)
