"""Several hosts on one machine: Linux network namespaces on a private subnet.

Each host is a network namespace ``<prefix>-h<i>`` with one interface,
``eth0``, at ``10.77.0.<i+1>/24``, and nothing else (no route out): a process
started in it (:meth:`Hosts.command`) sees only that interface and loopback.
The hosts are joined either by

* a kernel bridge (``delay_ms=None``): one veth pair per host, the bridge in a
  namespace of its own (``<prefix>-sw``), so the machine's own network is
  never touched; or
* a **delaying switch** (``delay_ms`` a number): each host's ``eth0`` is a TAP
  device whose frames this process forwards, ``delay_ms`` after it read them,
  to the host that owns the destination MAC (or floods them). Every one-way
  trip takes ``delay_ms`` more, a round trip twice that. The kernel's own
  delay queue (``tc netem``) is used instead where it exists
  (:func:`netem_available`); on kernels without it (this project's machine)
  the switch stands in, adding its own forwarding time (a Python thread:
  tens of microseconds a frame).

Needs root (CAP_NET_ADMIN); :func:`missing_privilege` says why not, for a
skip. Everything is removed on exit, whatever happened: the namespaces with
their interfaces, the switch thread and its TAP devices.
"""

from __future__ import annotations

import fcntl
import heapq
import logging
import os
import select
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

__all__ = ["SUBNET", "Hosts", "missing_privilege", "netem_available"]

log = logging.getLogger(__name__)

SUBNET = "10.77.0"          # private (RFC 1918); host i is SUBNET.<i+1>
_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def missing_privilege() -> str | None:
    """Why :class:`Hosts` cannot run here (a reason for a skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"qtrl-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as err:
        return f"cannot create a network namespace: {err.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


def netem_available() -> bool:
    """Whether the kernel has ``tc netem`` (a delay queue on an interface)."""
    if shutil.which("tc") is None:
        return False
    probe = f"qtrl-netem-{os.getpid()}"
    _ip("netns", "add", probe)
    try:
        return subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo",
                               "root", "netem", "delay", "1ms"],
                              capture_output=True, check=False).returncode == 0
    finally:
        _ip("netns", "del", probe)


class Hosts:
    """``count`` hosts (network namespaces) joined by a bridge or a delaying switch.

    Args:
        count: number of hosts, 1..200.
        delay_ms: None for a plain kernel bridge; else the one-way delay added
            to every frame (netem where the kernel has it, else the switch).
        prefix: name prefix of the namespaces (unique per concurrent use).
    """

    def __init__(self, count: int, delay_ms: float | None = None, prefix: str = "qtrl") -> None:
        if not 1 <= count <= 200:
            raise ValueError(f"hosts {count}: must be from 1 to 200")
        if delay_ms is not None and delay_ms < 0:
            raise ValueError(f"delay {delay_ms} ms: must be >= 0")
        self.count, self.delay_ms, self.prefix = count, delay_ms, prefix
        self.names = [f"{prefix}-h{i}" for i in range(count)]
        self._created: list[str] = []
        self._switch: _DelaySwitch | None = None

    def address(self, host: int) -> str:
        """Host ``host``'s address, e.g. ``10.77.0.1`` for host 0."""
        return f"{SUBNET}.{host + 1}"

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside host ``host``'s namespace."""
        return ["ip", "netns", "exec", self.names[host], *argv]

    def __enter__(self) -> Self:
        try:
            for name in self.names:
                _ip("netns", "add", name)
                self._created.append(name)
                _ip("-n", name, "link", "set", "lo", "up")
            use_netem = self.delay_ms is not None and netem_available()
            if self.delay_ms is None or use_netem:
                self._bridge()
                if use_netem:
                    for name in self.names:
                        subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev",
                                        "eth0", "root", "netem", "delay",
                                        f"{self.delay_ms}ms"], check=True, capture_output=True)
            else:
                self._switch = _DelaySwitch(self.delay_ms / 1e3)
                for i, name in enumerate(self.names):
                    self._switch.attach(name, f"{self.prefix[:8]}t{i}")
                self._switch.start()
            for i, name in enumerate(self.names):
                _ip("-n", name, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        log.info("%d hosts up (%s), delay %s ms", self.count, ", ".join(self.names),
                 self.delay_ms)
        return self

    def _bridge(self) -> None:
        switch = f"{self.prefix}-sw"
        _ip("netns", "add", switch)
        self._created.append(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            _ip("link", "add", "name", "eth0", "netns", name, "type", "veth", "peer", "name",
                f"p{i}", "netns", switch)
            _ip("-n", switch, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", switch, "link", "set", f"p{i}", "up")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._switch is not None:
            self._switch.stop()
            self._switch = None
        for name in reversed(self._created):   # its interfaces go with it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self._created = []


class _DelaySwitch:
    """A learning Ethernet switch over TAP devices that holds every frame
    ``delay_s`` seconds before forwarding it (a thread of this process)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.fds: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qtrl-delay-switch", daemon=True)

    def attach(self, namespace: str, tap: str) -> None:
        """A TAP device for ``namespace``, moved there and named ``eth0``."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        self.fds.append(fd)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", tap.encode(), _IFF_TAP | _IFF_NO_PI))
        _ip("link", "set", tap, "netns", namespace)
        _ip("-n", namespace, "link", "set", tap, "name", "eth0")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _run(self) -> None:
        owner: dict[bytes, int] = {}          # MAC -> port that sent from it
        due: list[tuple[float, int, int, bytes]] = []   # (time, order, in port, frame)
        order = 0
        while not self._stop.is_set():
            wait = max(0.0, min(0.05, due[0][0] - time.monotonic())) if due else 0.05
            ready, _, _ = select.select(self.fds, [], [], wait)
            now = time.monotonic()
            for fd in ready:
                port = self.fds.index(fd)
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                owner[frame[6:12]] = port
                heapq.heappush(due, (now + self.delay_s, order, port, frame))
                order += 1
            while due and due[0][0] <= time.monotonic():
                _, _, port, frame = heapq.heappop(due)
                to = owner.get(frame[:6])
                targets = [to] if to is not None and not frame[0] & 1 else \
                    [p for p in range(len(self.fds)) if p != port]
                for target in targets:
                    try:
                        os.write(self.fds[target], frame)
                    except OSError:   # the host's interface is down: drop, as a wire would
                        pass
