"""What the redis-py scripts share: the ports from the command line, a client of one of
them (clients spread over the nodes by index), and what a call observes."""

import sys

import redis

PORTS = [int(port) for port in sys.argv[1:]]


def client(index=0, **options):
    port = PORTS[index % len(PORTS)]
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, **options)


def observed(call):
    """The value `call` returns, or the exception it raises, as the application sees it."""
    try:
        return call()
    except redis.RedisError as error:
        return {"raised": type(error).__name__, "text": str(error)}
