"""TLS: the client's TlsOptions reach a daemon listening with mutual TLS
(`jit up --listen tls/127.0.0.1:PORT --zenoh-config FILE`); a client without a certificate
from the CA cannot connect."""

from __future__ import annotations

import pytest

from jit_agent import Agent, PlaneUnavailable, TlsOptions, patch, put
from conftest import free_port
from tlscerts import daemon_config, make_certs

pytestmark = pytest.mark.daemon


def test_an_agent_talks_over_mutual_tls(universe, tmp_path):
    certs = make_certs(tmp_path / "certs")
    config = tmp_path / "plane.json5"
    config.write_text(daemon_config(certs))
    port = free_port()
    universe.agent_new("secure")
    universe.up(listen=[f"tls/127.0.0.1:{port}"], extra_args=["--zenoh-config", str(config)])
    key = universe.dir / ".jit" / "agents" / "secure.key"
    tls = TlsOptions(
        root_ca_certificate=certs / "ca.pem",
        connect_certificate=certs / "agent.pem",
        connect_private_key=certs / "agent.key",
    )
    agent = Agent.connect("secure", key, f"tls/127.0.0.1:{port}", tls=tls)
    universe.agents.append(agent)
    sws = agent.create()["id"]
    answers = agent.push_many(sws, [patch([put(f"{i}.txt", "x\n")]) for i in range(20)], window=8)
    assert [a["seq"] for a in answers] == list(range(1, 21))
    assert agent.read(sws, "7.txt")["content"] == b"x\n"
    # No client certificate: the daemon's listener refuses the link.
    with pytest.raises(PlaneUnavailable):
        Agent.connect("secure", key, f"tls/127.0.0.1:{port}", tls=TlsOptions(root_ca_certificate=certs / "ca.pem"))
    # A certificate another CA signed: refused too.
    other = make_certs(tmp_path / "other", ca_cn="another CA")
    with pytest.raises(PlaneUnavailable):
        Agent.connect(
            "secure", key, f"tls/127.0.0.1:{port}",
            tls=TlsOptions(
                root_ca_certificate=certs / "ca.pem",
                connect_certificate=other / "agent.pem",
                connect_private_key=other / "agent.key",
            ),
        )
