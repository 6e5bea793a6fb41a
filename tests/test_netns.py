"""Real hosts on one machine: each agent in its own network namespace with its
own torchrun, the group meeting over the namespaces' private addresses
(10.77.0.x) and nothing else. Needs root; skipped with the reason otherwise."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from qtrl.bench.netns import Hosts, missing_privilege
from qtrl.train import load_checkpoint

REASON = missing_privilege()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"netns hosts: {REASON}")


def _run_hosts(hosts: Hosts, run, episodes: int, mode: str = "sync") -> list[subprocess.CompletedProcess]:
    """One torchrun per host, host 0 the rendezvous point; every host's result."""
    procs = []
    for i in range(hosts.count):
        cmd = hosts.command(i, [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", str(hosts.count),
            "--nproc-per-node", "1", "--node-rank", str(i), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"{hosts.address(0)}:29500", "--rdzv-id", "netns-test",
            # The namespaces share one host name ("localhost" here): say which host
            # holds the rendezvous store, and give each its address for the workers
            "--rdzv-conf", f"is_host={int(i == 0)}", "--local-addr", hosts.address(i),
            "-m", "qtrl", "train", "--preset", "cartpole-paper", "--episodes", str(episodes),
            "--mode", mode, "--no-tensorboard", "--out", str(run)])
        env = {"GLOO_SOCKET_IFNAME": "eth0"}
        procs.append(subprocess.Popen(cmd, env={**_environ(), **env}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for proc in procs:     # say where each host was, not only that one hung
            proc.kill()
        tails = [f"host {i}: {proc.communicate()[1][-1500:]}" for i, proc in enumerate(procs)]
        raise AssertionError("a host did not finish in 120 s:\n" + "\n".join(tails)) from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return out


def _environ() -> dict[str, str]:
    import os
    return dict(os.environ)


@pytest.mark.parametrize("count", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_hosts_train_over_their_private_addresses(tmp_path, count):
    run = tmp_path / "run"
    prefix = f"qt{uuid.uuid4().hex[:6]}"
    with Hosts(count, prefix=prefix) as hosts:
        # Host 1 cannot reach the machine's loopback-bound world, only its peers.
        ping = subprocess.run(hosts.command(1, ["ip", "-o", "-4", "addr", "show"]),
                              capture_output=True, text=True, check=True).stdout
        assert f"{hosts.address(1)}/24" in ping and "127.0.0.1" in ping
        assert len([line for line in ping.splitlines() if "inet " in line]) == 2
        results = _run_hosts(hosts, run, episodes=2 * count)
    assert [r.returncode for r in results] == [0] * count, [r.stderr[-2000:] for r in results]
    state = load_checkpoint(run)[1]
    assert int(state["update"]) == 2 and len(state["episode_returns"]) == 2 * count
    # every namespace is gone, with its interfaces
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout
    assert prefix not in left


def test_hosts_are_removed_after_an_error():
    prefix = f"qt{uuid.uuid4().hex[:6]}"
    with pytest.raises(RuntimeError, match="inside"), Hosts(2, delay_ms=5.0, prefix=prefix):
        raise RuntimeError("inside")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout
    assert prefix not in left
    with pytest.raises(ValueError, match="hosts 0"):
        Hosts(0)


def test_delay_reaches_the_round_trip(tmp_path):
    """A TCP echo between two hosts takes at least twice the one-way delay."""
    server = ("import socket,sys\ns=socket.socket();s.bind((sys.argv[1],5555));s.listen(1)\n"
              "c,_=s.accept()\nfor _ in range(10): c.sendall(c.recv(64))\n")
    client = ("import socket,sys,time\nc=socket.create_connection((sys.argv[1],5555))\n"
              "c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nts=[]\n"
              "for _ in range(10):\n t=time.perf_counter();c.sendall(b'x');c.recv(64)\n"
              " ts.append(time.perf_counter()-t)\nprint(sorted(ts)[5])\n")
    with Hosts(2, delay_ms=10.0, prefix=f"qt{uuid.uuid4().hex[:6]}") as hosts:
        srv = subprocess.Popen(hosts.command(1, [sys.executable, "-c", server, hosts.address(1)]))
        try:
            for _ in range(50):   # until the server listens
                got = subprocess.run(hosts.command(0, [sys.executable, "-c", client,
                                                       hosts.address(1)]),
                                     capture_output=True, text=True, timeout=30, check=False)
                if got.returncode == 0:
                    break
            rtt = float(got.stdout)
        finally:
            srv.kill()
            srv.wait()
    assert 0.020 <= rtt < 0.2
