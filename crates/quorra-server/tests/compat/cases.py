"""What the Python compatibility scripts share: cases registered with @case, run in
order, each printed as one JSON line {"case": ..., "result": ...}; and threads."""

import json
import threading

CASES = []


def case(function):
    """Registers a case; its return value (or what it raised) is its observation."""
    CASES.append(function)
    return function


def in_threads(function, count=8):
    """Runs function(index) in `count` threads at once."""
    threads = [threading.Thread(target=function, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_cases(observed):
    """Runs every case through `observed` (which turns what it raises into a value) and
    prints its line."""
    for function in CASES:
        result = observed(function)
        print(json.dumps({"case": function.__name__, "result": result}, default=repr), flush=True)
