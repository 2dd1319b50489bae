"""A redis-py session store on hashes with field TTLs (Redis 7.4's HEXPIRE family),
checked against what Redis 7.4 documents, since Debian's redis-server (7.0) has no
field TTLs to compare with.

Usage: python3 session_store.py PORT [PORT ...]

Each session is a hash; its short-lived fields (a CSRF token, a one-time flash
message) carry their own TTL, the session as a whole the key's TTL. Clients are spread
over the ports. Prints one JSON line per check passed; exits non-zero, with the failed
check, if quorra answers otherwise.
"""

import json
import sys
import time

import redis

PORTS = [int(port) for port in sys.argv[1:]]


def client(index=0):
    port = PORTS[index % len(PORTS)]
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)


def check(label, got, expected):
    if got != expected:
        sys.exit(f"{label}: got {got!r}, expected {expected!r}")
    print(json.dumps({"case": label, "result": "ok"}), flush=True)


def main():
    web, worker = client(0), client(1)
    session = "{session}:abc"
    web.delete(session)
    web.hset(session, mapping={"user": "7", "csrf": "t0k3n", "flash": "saved!"})
    web.expire(session, 3600)
    check("hexpire sets field TTLs", web.hpexpire(session, 400, "csrf", "flash", "nope"), [1, 1, -2])
    check("hexpire NX refuses a field with a TTL", web.hexpire(session, 100, "csrf", nx=True), [0])
    check("hexpire GT refuses an earlier time", web.hpexpire(session, 10, "flash", gt=True), [0])
    ttls = worker.hpttl(session, "user", "csrf", "nope")
    check("hpttl on another node", [ttls[0], 0 < ttls[1] <= 400, ttls[2]], [-1, True, -2])
    times = worker.hpexpiretime(session, "csrf")
    check("hpexpiretime is absolute", abs(times[0] - (time.time() * 1000 + ttls[1])) < 2000, True)
    check("hpersist", web.hpersist(session, "flash", "user", "nope"), [1, -1, -2])
    time.sleep(0.6)
    check("an expired field is gone", worker.hgetall(session), {"user": "7", "flash": "saved!"})
    check("hget of an expired field", worker.hget(session, "csrf"), None)
    check("the key's own TTL stays", 3590 < web.ttl(session) <= 3600, True)
    web.hset(session, "csrf", "new")
    web.hexpire(session, 100, "csrf")
    web.hset(session, "csrf", "newer")
    check("hset clears the field's TTL", web.httl(session, "csrf"), [-1])
    check("a past time deletes the field", web.hexpireat(session, 1, "flash"), [2])
    check("fields left", sorted(worker.hkeys(session)), ["csrf", "user"])
    web.hpexpire(session, 200, "csrf", "user")
    time.sleep(0.5)
    check("a hash whose every field expired is gone", [worker.exists(session), worker.hlen(session)], [0, 0])
    check("httl of a missing key", web.httl(session, "a", "b"), [-2, -2])
    errors = []
    for args in (["HEXPIRE", session, "10", "FIELDS", "2", "a"],
                 ["HEXPIRE", session, "10", "FIELDS", "0", "a"],
                 ["HEXPIRE", session, "10", "a", "b", "c"],
                 ["HEXPIRE", session, "-1", "FIELDS", "1", "a"]):
        try:
            web.execute_command(*args)
            errors.append(None)
        except redis.ResponseError as error:
            errors.append(str(error))
    check("field TTL errors", errors, [
        "The `numfields` parameter must match the number of arguments",
        "Parameter `numFields` should be greater than 0",
        "Mandatory argument FIELDS is missing or not at the right position",
        "invalid expire time in 'hexpire' command",
    ])
    web.set("{session}:string", "v")
    try:
        web.hexpire("{session}:string", 10, "f")
        check("hexpire on a string", "no error", "WRONGTYPE")
    except redis.ResponseError as error:
        check("hexpire on a string", str(error).split()[0], "WRONGTYPE")


if __name__ == "__main__":
    main()
