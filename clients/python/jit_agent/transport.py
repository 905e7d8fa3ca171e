"""Opening the Zenoh session an agent talks through.

An agent is a Zenoh **client** with multicast scouting off, connecting to one or more of the
daemon's endpoints: ``unixsock-stream/<universe>/.jit/zenoh.sock`` (always there),
``tcp/127.0.0.1:PORT`` (``jit up --listen``), or ``tls/HOST:PORT`` (a TLS listener or a
``zenohd`` router) with :class:`TlsOptions` naming the root CA and, for mutual TLS, the
client's certificate and key — written under Zenoh's ``transport/link/tls/…`` configuration.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import zenoh

from .errors import PlaneUnavailable

__all__ = ["TlsOptions", "endpoints_of", "local_endpoint", "make_config", "open_session"]


@dataclass
class TlsOptions:
    """Zenoh TLS settings for ``tls/`` endpoints.

    - ``root_ca_certificate``: the CA that signed the listener's certificate;
    - ``connect_certificate`` / ``connect_private_key``: this client's certificate and key, for
      mutual TLS (``enable_mtls`` defaults to true when both are given);
    - ``verify_name_on_connect``: check the listener's certificate names the host dialled.
    """

    root_ca_certificate: Optional[Union[str, os.PathLike]] = None
    connect_certificate: Optional[Union[str, os.PathLike]] = None
    connect_private_key: Optional[Union[str, os.PathLike]] = None
    enable_mtls: Optional[bool] = None
    verify_name_on_connect: Optional[bool] = None

    def settings(self) -> Dict[str, Any]:
        """``transport/link/tls/<key>`` → value, for the keys set."""
        out: Dict[str, Any] = {}
        for field in ("root_ca_certificate", "connect_certificate", "connect_private_key"):
            value = getattr(self, field)
            if value is not None:
                out[field] = str(Path(value))
        mtls = self.enable_mtls
        if mtls is None and self.connect_certificate and self.connect_private_key:
            mtls = True
        if mtls is not None:
            out["enable_mtls"] = bool(mtls)
        if self.verify_name_on_connect is not None:
            out["verify_name_on_connect"] = bool(self.verify_name_on_connect)
        return out


def local_endpoint(universe: Union[str, os.PathLike]) -> str:
    """The Unix-socket endpoint of the daemon serving universe directory ``universe``."""
    path = Path(universe).resolve() / ".jit" / "zenoh.sock"
    return f"unixsock-stream/{path}"


def endpoints_of(endpoint: Union[str, Iterable[str]]) -> List[str]:
    """One endpoint or several, as a list."""
    if isinstance(endpoint, str):
        return [endpoint]
    return list(endpoint)


def make_config(
    endpoints: Iterable[str],
    tls: Optional[TlsOptions] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> "zenoh.Config":
    """The client configuration: mode client, multicast scouting off, ``connect/endpoints``,
    optional TLS settings and any ``extra`` ``{path: value}`` Zenoh settings."""
    config = zenoh.Config()
    config.insert_json5("mode", json.dumps("client"))
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("connect/endpoints", json.dumps(list(endpoints)))
    if tls is not None:
        for key, value in tls.settings().items():
            config.insert_json5(f"transport/link/tls/{key}", json.dumps(value))
    for key, value in (extra or {}).items():
        config.insert_json5(key, json.dumps(value))
    return config


def open_session(config: "zenoh.Config") -> "zenoh.Session":
    """Opens the session; a failure to reach any endpoint is :class:`PlaneUnavailable`."""
    try:
        return zenoh.open(config)
    except Exception as error:  # zenoh raises ZError
        raise PlaneUnavailable(message=f"cannot open a Zenoh session: {error}") from error
