"""Short, fixed-width renderings of numbers for table cells; `clean` for text a client or a host supplied."""

from __future__ import annotations

from typing import Optional, Sequence

from rich.cells import cell_len, set_cell_size

from sollol_core.observability.text import printable as clean

__all__ = ["clean"]

BLOCKS = "▁▂▃▄▅▆▇█"

STATE_STYLES = {
    "healthy": "bold $success",
    "unhealthy": "bold $error",
    "draining": "bold $warning",
    "disabled": "$text-muted",
}

COMPONENT_STYLES = {
    "ready": "$success",
    "starting": "$warning",
    "failed": "bold $error",
    "off": "$text-muted",
}


def uptime(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def ms(value: Optional[float]) -> str:
    """Milliseconds in at most 6 characters: '4.2ms', '123ms', '1.24s', '—' when unknown."""
    if value is None or value <= 0:
        return "—"
    if value < 10:
        return f"{value:.1f}ms"
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 100_000:
        return f"{value / 1000:.2f}s" if value < 10_000 else f"{value / 1000:.1f}s"
    return f"{value / 1000:.0f}s"


def percent(fraction: Optional[float]) -> str:
    if fraction is None:
        return "—"
    return f"{fraction * 100:.0f}%" if fraction < 0.9995 else "100%"


def mib(value: Optional[float]) -> str:
    """GPU memory in MiB -> '7.5G' / '512M'; '—' when unknown."""
    if value is None:
        return "—"
    return f"{value / 1024:.1f}G" if value >= 1024 else f"{value:.0f}M"


def rate(value: float) -> str:
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def sparkline(values: Sequence[float], width: int) -> str:
    """`values` (oldest first) squeezed into `width` block characters, each the max of its bucket.

    Scaled from 0 to the largest value shown: bar heights compare with zero, so a steady latency is a
    level bar and a spike stands out; a host with no samples yet shows blank.
    """
    if width <= 0:
        return ""
    if not values:
        return " " * width
    n = len(values)
    if n <= width:
        buckets = [float(v) for v in values]
    else:
        buckets = []
        for i in range(width):
            start, end = i * n // width, (i + 1) * n // width
            buckets.append(max(values[start:max(end, start + 1)]))
    top = max(buckets)
    if top <= 0:
        chars = BLOCKS[0] * len(buckets)
    else:
        last = len(BLOCKS) - 1
        chars = "".join(BLOCKS[min(last, int(v / top * last + 0.5))] for v in buckets)
    return chars.rjust(width)


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` in exactly `width` terminal cells: cut with an ellipsis when longer, padded when shorter (on the
    left when `right`). Cells, not characters: a wide character (CJK, most emoji) takes two, so a model
    name or an error in such letters neither pushes the columns after it out of line nor past the edge."""
    if width <= 0:
        return ""
    narrow = text.isascii()  # one cell a character: the common case, measured without rich
    used = len(text) if narrow else cell_len(text)
    if used > width:
        return (text[: width - 1] if narrow else set_cell_size(text, width - 1)) + "…"
    if used == width:
        return text
    pad = " " * (width - used)
    return pad + text if right else text + pad


def seconds(value: Optional[float]) -> str:
    """A duration in seconds: '0.05 s', '12.3 s', '4m10s', '1h02m'; '—' when unknown."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f} s"
    if value < 100:
        return f"{value:.1f} s"
    return uptime(value)


def count(value: int) -> str:
    """A count in at most 5 characters: '999', '8.1k', '12k', '1.2M'."""
    if value < 1000:
        return str(value)
    if value < 10_000:
        return f"{value / 1000:.1f}k"
    if value < 1_000_000:
        return f"{value // 1000}k"
    return f"{value / 1_000_000:.1f}M"


def size(value: int) -> str:
    """Bytes: '960 B', '12.3 KiB', '4.5 MiB'."""
    if value < 1024:
        return f"{value} B"
    if value < 1024 ** 2:
        return f"{value / 1024:.1f} KiB"
    if value < 1024 ** 3:
        return f"{value / 1024 ** 2:.1f} MiB"
    return f"{value / 1024 ** 3:.1f} GiB"


def short_model(name: str) -> str:
    name = clean(name)
    return name[: -len(":latest")] if name.endswith(":latest") else name


SIM_PREFIX = "simulated "


def host_name(address: str, label: str) -> str:
    """What the table and the request log call a host: its label when it has one, else its address.

    A --demo node's label "simulated fast" reads "fast (sim)"; the address stays in the host detail.
    """
    if not label:
        return clean(address)
    label = clean(label)
    if label.startswith(SIM_PREFIX) and len(label) > len(SIM_PREFIX):
        return f"{label[len(SIM_PREFIX):]} (sim)"
    return label


def host_names(hosts: Sequence[tuple[str, str]]) -> dict[str, str]:
    """address -> name for (address, label) pairs; names that would be alike get their port added."""
    names = {address: host_name(address, label) for address, label in hosts}
    seen: dict[str, int] = {}
    for name in names.values():
        seen[name] = seen.get(name, 0) + 1
    for address, name in names.items():
        if seen[name] > 1 and name != address:
            names[address] = f"{name} :{address.rsplit(':', 1)[-1]}"
    return names


def slots(in_use: int, limit: Optional[int]) -> str:
    """'3/4', '2/∞' when unlimited."""
    return f"{in_use}/{'∞' if limit is None else limit}"
