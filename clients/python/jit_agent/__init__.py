"""jit_agent — the Python client of JIT's message plane.

An agent connects to a JIT daemon (``jit up``) over Zenoh, signs every message with its
ed25519 key, and retries each one with the same bytes until the daemon acknowledges it; the
kernel applies each message exactly once. See ``README.md`` beside this package and the
protocol in ``docs/plane.md``.

    from jit_agent import Agent, put, patch

    with Agent.local("/path/to/universe", "alice") as agent:
        sws = agent.create()
        agent.push(sws["id"], patch([put("hello.txt", "hi\\n")]))
        print(agent.commit(sws["id"], "Alice <a@example.org>", "hello"))
"""

from .client import MAX_IN_FLIGHT, Agent
from .envelope import (
    Envelope,
    generate_key,
    load_key,
    public_key_bytes,
    public_key_hex,
    seed_hex,
    signing_bytes,
    write_key_file,
)
from .errors import *  # noqa: F401,F403 - the typed errors are part of the API
from .errors import __all__ as _error_names
from .events import EventStream, Subscription, decode_event
from .patches import (
    INLINE_MAX,
    Hunk,
    blob_id,
    chmod,
    delete,
    edit,
    hunk,
    mkdir,
    node_id,
    patch,
    put,
    put_blob,
    rename,
    rmdir,
    symlink,
)
from .transport import TlsOptions, local_endpoint, make_config

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "MAX_IN_FLIGHT",
    "Envelope",
    "generate_key",
    "load_key",
    "public_key_bytes",
    "public_key_hex",
    "seed_hex",
    "signing_bytes",
    "write_key_file",
    "EventStream",
    "Subscription",
    "decode_event",
    "INLINE_MAX",
    "Hunk",
    "blob_id",
    "chmod",
    "delete",
    "edit",
    "hunk",
    "mkdir",
    "node_id",
    "patch",
    "put",
    "put_blob",
    "rename",
    "rmdir",
    "symlink",
    "TlsOptions",
    "local_endpoint",
    "make_config",
] + list(_error_names)
