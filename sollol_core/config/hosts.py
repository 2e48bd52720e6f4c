"""Host addresses and model names as the config holds them: host:port normalised, hosts files and the
--hosts argument, loopback addresses, and Ollama's model names."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Optional

from ..errors import ConfigError


def is_loopback_host(host: str) -> bool:
    """True for an address that only this machine reaches: 127.0.0.0/8, ::1, localhost. A name that merely
    starts with 127. (127.0.0.1.example.com) is not one."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# what a host:port may hold: a name or an IPv4 address, or an IPv6 address in brackets (no space, no control
# character: the address goes into the upstream request's Host line and onto the dashboard)
_HOST_CHARS = re.compile(r"(?:[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.\-]+)?\])(?::[0-9A-Za-z]*)?")
def model_name(name: str) -> str:
    """A model as Ollama names it: 'llama3.2' and 'llama3.2:latest' are one model."""
    name = name.strip()
    return name if ":" in name else f"{name}:latest"


def normalize_host(value: str) -> str:
    """'10.0.0.2' -> '10.0.0.2:11434'; 'http://h:1/' -> 'h:1'. Raises ValueError on nonsense."""
    h = value.strip()
    for prefix in ("http://", "https://"):
        if h.startswith(prefix):
            h = h[len(prefix):]
    h = h.rstrip("/")
    if h.count(":") > 1 and not h.startswith("[") and "/" not in h:
        raise ValueError(f"not a host:port: {value!r} (write an IPv6 address in brackets: [fe80::1]:11434)")
    if not h or "/" in h or not _HOST_CHARS.fullmatch(h):
        raise ValueError(f"not a host:port: {value!r}")
    if ":" not in h or h.endswith("]"):
        h = f"{h}:11434"
    name, _, port = h.rpartition(":")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port: {value!r}")
    return h


def read_hosts_file(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"hosts file {p}: cannot read it ({e.strerror})") from e
    hosts = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            hosts.append(normalize_host(line))
        except ValueError as e:
            raise ConfigError(f"hosts file {p}, line {n}: {e}") from e
    return hosts


def parse_hosts_arg(value: str) -> tuple[list[str], Optional[str]]:
    """--hosts takes a file or a comma-separated list. Returns (hosts, hosts_file)."""
    if Path(value).is_file():
        return [], value
    if "/" in value or value.endswith((".txt", ".conf", ".list")):
        raise ConfigError(f"--hosts {value}: no such file (give a hosts file or host:port,host:port)")
    try:
        return [normalize_host(h) for h in value.split(",") if h.strip()], None
    except ValueError as e:
        raise ConfigError(f"--hosts: {e} (give a hosts file or host:port,host:port)") from e
