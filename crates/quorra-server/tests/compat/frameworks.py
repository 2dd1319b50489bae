"""What Django and Flask applications do with their Redis cache, run against one server.

Usage: python3 frameworks.py PORT [PORT ...]

Django's built-in RedisCache, django-redis and Flask-Caching, each pointed at the first
port (threads are spread over all of them). Prints one JSON object per case, like
redis_py.py; the suite compares the lines with Debian's redis-server's
(crates/quorra-server/tests/server/compat.rs).

Keys that one call writes together (set_many, delete_pattern) share a hash tag: these
libraries send them in one MULTI ... EXEC, which in a cluster must have one primary (on
Redis Cluster too). Keys read or deleted together need not.
"""

import sys

import django
from django.conf import settings

PORTS = [int(port) for port in sys.argv[1:]]


def url(index=0):
    return f"redis://127.0.0.1:{PORTS[index % len(PORTS)]}/0"


settings.configure(
    CACHES={
        "builtin": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url()},
        "django_redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url(),
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        },
        **{
            f"django_redis_{index}": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": url(index),
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
            }
            for index in range(8)
        },
    },
)
django.setup()

from django.core.cache import caches  # noqa: E402  (after settings)
from flask import Flask  # noqa: E402
from flask_caching import Cache  # noqa: E402

from cases import case, in_threads, run_cases  # noqa: E402


def observed(call):
    try:
        return call()
    except Exception as error:  # the application sees whatever the library raises
        return {"raised": type(error).__name__, "text": str(error)}


def common_operations(cache):
    """get/set/get_many/set_many/delete_many/incr through a Django cache."""
    cache.set("plain", "value", 60)
    cache.set_many({"{many}:a": 1, "{many}:b": "two", "{many}:c": [3]}, 60)
    results = [
        cache.get("plain"),
        cache.get("missing", "default"),
        cache.get_many(["{many}:a", "{many}:b", "{many}:c", "missing"]),
        cache.add("plain", "not added"),
        cache.add("added", "yes"),
    ]
    cache.delete_many(["{many}:a", "{many}:b"])
    cache.set("counter", 10)
    results += [
        cache.get_many(["{many}:a", "{many}:b", "{many}:c"]),
        cache.incr("counter", 5),
        cache.decr("counter"),
        observed(lambda: cache.incr("no-such-counter")),
        cache.touch("plain", 120),
        cache.delete("plain"),
        cache.get("plain"),
    ]
    return results


@case
def django_builtin_redis_cache():
    cache = caches["builtin"]
    results = common_operations(cache)
    cache.clear()
    results.append(cache.get("added"))
    return results


@case
def django_redis_cache():
    cache = caches["django_redis"]
    results = common_operations(cache)
    cache.set_many({f"{{dp}}:k{i}": i for i in range(25)})
    results.append(cache.delete_pattern("{dp}:*", itersize=7))
    results.append(sorted(cache.keys("{dp}:*")))
    with cache.lock("{lock}:resource", timeout=5):
        results.append(0 < cache.ttl("{lock}:resource") <= 5)
    results.append(cache.ttl("{lock}:resource"))
    cache.clear()
    results.append(cache.get("added"))
    return results


@case
def django_redis_incr_is_exact_under_eight_threads():
    caches["django_redis"].set("{incr}:n", 0)

    def increment(index):
        cache = caches[f"django_redis_{index}"]
        for _ in range(100):
            cache.incr("{incr}:n")

    in_threads(increment)
    return caches["django_redis"].get("{incr}:n")


@case
def flask_caching():
    app = Flask(__name__)
    cache = Cache(app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url(), "CACHE_KEY_PREFIX": "flask_"})
    calls = []

    @cache.memoize(60)
    def square(n):
        calls.append(n)
        return n * n

    with app.app_context():
        results = [square(4), square(4), square(5), len(calls)]
        cache.delete_memoized(square, 4)
        results += [square(4), len(calls)]
        cache.set_many({"{fl}:a": 1, "{fl}:b": 2})
        results += [cache.get_many("{fl}:a", "{fl}:b", "{fl}:missing"), cache.cache.inc("{fl}:n"), cache.cache.inc("{fl}:n", 4)]
        results.append(cache.has("{fl}:a"))
        cache.clear()
        results.append(cache.get("{fl}:a"))
    return results


if __name__ == "__main__":
    run_cases(observed)
