#!/usr/bin/env python3
"""The Python client (clients/python, `jit_agent`) against a running daemon: the round trip of
one patch (send → acknowledgement, p50/p99 over N pushes, one at a time) and pipelined
throughput (acknowledged patches/s with a window of W in flight, go-back-N). Prints Markdown
table rows, or the whole table with --header.

    python3 bench/python_client.py --endpoint unixsock-stream/DIR/.jit/zenoh.sock \\
        --name bench --key DIR/.jit/agents/bench.key --label "Unix socket" --header

Any Zenoh endpoint works; for TLS give a tls/HOST:PORT endpoint and --tls-root-ca (plus
--tls-cert/--tls-key for mutual TLS), which go into the Zenoh configuration under
transport/link/tls/. `bench/python_client.sh` sets up a universe and a daemon and runs this
over the Unix socket and TCP loopback.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from jit_agent import Agent, TlsOptions, patch, put


#: Each patch puts one of this many files, as the Rust plane benchmark does
#: (plane/examples/bench.rs): a directory that grows by one entry per patch would measure the
#: daemon's directory rewrites, not the client.
FILES = 64


def content(i: int, size: int) -> bytes:
    """The content of patch i: "edit i" padded to `size` bytes, ending in a newline."""
    text = f"edit {i}".encode()
    return text.ljust(max(size - 1, len(text)), b" ") + b"\n"


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def round_trips(agent: Agent, count: int, warmup: int, size: int):
    """Seconds per push, one at a time, each waiting for its acknowledgement."""
    sws = agent.create()["id"]
    for i in range(warmup):
        agent.push(sws, patch([put(f"warm/f{i % FILES}.txt", content(i, size))], id=f"warm{i}"))
    samples = []
    for i in range(count):
        one = patch([put(f"rt/f{i % FILES}.txt", content(i, size))], id=f"rt{i}")
        started = time.perf_counter()
        agent.push(sws, one)
        samples.append(time.perf_counter() - started)
    agent.discard(sws)
    return sorted(samples)


def throughput(agent: Agent, count: int, window: int, size: int):
    """Acknowledged patches per second with `window` in flight (patches built beforehand;
    signing and encoding happen inside the timed loop, as the window opens)."""
    sws = agent.create()["id"]
    patches = [patch([put(f"tp/f{i % FILES}.txt", content(i, size))], id=f"tp{i}") for i in range(count)]
    started = time.perf_counter()
    answers = agent.push_many(sws, patches, window=window)
    elapsed = time.perf_counter() - started
    # Every patch acknowledged once. (Not necessarily at seq i + 1: a request Zenoh dropped on
    # the way lands when it is resent, after those that overtook it.)
    seqs = sorted(answer["seq"] for answer in answers)
    assert seqs == list(range(1, count + 1)), "every patch acknowledged, each once"
    overtaken = sum(1 for i, answer in enumerate(answers) if answer["seq"] != i + 1)
    if overtaken:
        print(f"({overtaken} of {count} patches landed out of their order: resent after a loss)", file=sys.stderr)
    agent.discard(sws)
    return count / elapsed, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="Zenoh endpoint: unixsock-stream/…, tcp/…, tls/…")
    parser.add_argument("--name", required=True, help="registered agent name")
    parser.add_argument("--key", required=True, help="the agent's key file (64 hex characters)")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--label", help="the transport's name in the table (default: the endpoint)")
    parser.add_argument("--round-trips", type=int, default=1000, help="pushes timed one at a time (≥ 500)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--patches", type=int, default=10000, help="patches pushed pipelined (≥ 5,000)")
    parser.add_argument("--window", type=int, default=256, help="patches in flight")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (median, min–max)")
    parser.add_argument("--size", type=int, default=16, help="bytes of content per patch (one of 64 files)")
    parser.add_argument("--tls-root-ca", help="root CA certificate (tls/ endpoints)")
    parser.add_argument("--tls-cert", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="client private key (mutual TLS)")
    parser.add_argument("--tls-no-verify-name", action="store_true", help="do not check the server's name")
    parser.add_argument("--header", action="store_true", help="print the table's header first")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of table rows")
    args = parser.parse_args(argv)

    tls = None
    if args.tls_root_ca or args.tls_cert or args.tls_key:
        tls = TlsOptions(
            root_ca_certificate=args.tls_root_ca,
            connect_certificate=args.tls_cert,
            connect_private_key=args.tls_key,
            verify_name_on_connect=False if args.tls_no_verify_name else None,
        )
    label = args.label or args.endpoint
    connected = time.perf_counter()
    agent = Agent.connect(args.name, args.key, args.endpoint, namespace=args.namespace, tls=tls)
    try:
        setup_ms = (time.perf_counter() - connected) * 1000
        samples = round_trips(agent, args.round_trips, args.warmup, args.size)
        rates = [throughput(agent, args.patches, args.window, args.size)[0] for _ in range(args.runs)]
    finally:
        agent.close()

    p50, p99 = percentile(samples, 0.50) * 1000, percentile(samples, 0.99) * 1000
    mean = statistics.fmean(samples) * 1000
    rate = statistics.median(rates)
    if args.json:
        print(json.dumps({
            "label": label, "endpoint": args.endpoint, "round_trips": len(samples),
            "p50_ms": p50, "p99_ms": p99, "mean_ms": mean, "patches": args.patches,
            "window": args.window, "rates": rates, "median_rate": rate, "connect_ms": setup_ms,
        }))
        return 0
    if args.header:
        print("| transport | round trip p50 | p99 | mean | pushes timed | patches/s, "
              f"{args.window} in flight (median, min–max of {args.runs} × {args.patches:,}) |")
        print("|---|---|---|---|---|---|")
    print(f"| {label} | {p50:.2f} ms | {p99:.2f} ms | {mean:.2f} ms | {len(samples):,} | "
          f"{rate:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
