#!/usr/bin/env python3
"""A small JIT agent: connect (with a registered key, or by enrolling a new one), create an
SWS, read a file, edit it with an ``edit`` op against the blob id the read answered, commit,
and print the snapshot.

    # an agent registered with `jit -C DIR agent new bot`:
    python3 examples/agent.py --universe DIR --name bot

    # a key made here, enrolled (the owner runs `jit -C DIR agent approve bot2`):
    python3 examples/agent.py --universe DIR --name bot2 --enrol --key bot2.key

    # another endpoint (a daemon started with --listen tcp/127.0.0.1:7447):
    python3 examples/agent.py --endpoint tcp/127.0.0.1:7447 --name bot --key DIR/.jit/agents/bot.key
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jit_agent import (
    Agent,
    JitError,
    PathNotFound,
    edit,
    generate_key,
    hunk,
    local_endpoint,
    patch,
    public_key_hex,
    put,
    write_key_file,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--universe", type=Path, help="the universe directory (its daemon's Unix socket)")
    parser.add_argument("--endpoint", help="a Zenoh endpoint instead, e.g. tcp/127.0.0.1:7447")
    parser.add_argument("--namespace", default="", help="the deployment's key prefix, if any")
    parser.add_argument("--name", required=True, help="the agent's name")
    parser.add_argument(
        "--key",
        type=Path,
        help="key file (64 hex characters); default UNIVERSE/.jit/agents/NAME.key, "
        "or with --enrol NAME.key, created if missing",
    )
    parser.add_argument("--enrol", action="store_true", help="ask to join and wait for the owner's approval")
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for approval (default 300)")
    parser.add_argument("--path", default="NOTES.md", help="the file to edit (created if missing)")
    parser.add_argument("--branch", help="the branch (default: the checked-out one)")
    args = parser.parse_args(argv)
    if args.universe is None and args.endpoint is None:
        parser.error("give --universe or --endpoint")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    endpoint = args.endpoint or local_endpoint(args.universe)

    if args.enrol:
        key_file = args.key or Path(f"{args.name}.key")
        if not key_file.exists():
            write_key_file(generate_key(), key_file)
            print(f"made a key: {key_file}")
        agent = Agent.enrol(args.name, key_file, endpoint, namespace=args.namespace, note="examples/agent.py")
        if not agent.approved:
            where = f"-C {args.universe} " if args.universe else ""
            print(f"enrolment of {args.name} is {agent.enrolment['state']} (key {public_key_hex(key_file)})")
            print(f"waiting for the owner: jit {where}agent approve {args.name}", flush=True)
            agent.wait_until_approved(timeout=args.wait)
        print(f"{args.name} is approved")
    else:
        key_file = args.key
        if key_file is None:
            if args.universe is None:
                print("--key is needed with --endpoint", file=sys.stderr)
                return 2
            key_file = args.universe / ".jit" / "agents" / f"{args.name}.key"
        agent = Agent.connect(args.name, key_file, endpoint, namespace=args.namespace)

    with agent:
        sws = agent.create(branch=args.branch)["id"]
        print(f"SWS {sws} on {agent.status(sws)['branch']}")

        # Read the file (creating it first if the branch does not have it).
        try:
            current = agent.read(sws, args.path)
        except PathNotFound:
            agent.push(sws, patch([put(args.path, "# Notes\n")], author=args.name))
            current = agent.read(sws, args.path)
        lines = current["content"].decode("utf-8", errors="replace").splitlines(keepends=True)
        print(f"read {args.path}: {current['size']} bytes, {len(lines)} lines, blob {current['blob'][:12]}")

        # Append a line with an edit op: checked against the blob we read.
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if lines and not lines[-1].endswith("\n"):
            # The last line has no newline: replace it with itself plus one.
            change = hunk(len(lines) - 1, 1, [lines[-1], f"- edited by {args.name} at {stamp}"])
        else:
            change = hunk(len(lines), 0, [f"- edited by {args.name} at {stamp}"])
        applied = agent.push(sws, patch([edit(args.path, current["blob"], [change])], author=args.name))
        print(f"edit applied as patch #{applied['seq']}")
        print(agent.read(sws, args.path)["content"].decode("utf-8", errors="replace"), end="")

        committed = agent.commit(sws, f"{args.name} <{args.name}@agents.invalid>", f"{args.name}: edit {args.path}")
        print(f"snapshot {committed['snapshot'].hex()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except JitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
