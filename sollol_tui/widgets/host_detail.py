"""The selected host in full: every score term, so the operator sees why it ranks where it does.

The score is the `performance` formula the router uses: each term is ``weight × normalised value``,
their sum is divided by the host's weight; lower wins. Under the other strategies the score is still
shown (it is what `performance` would do), with the strategy's own ordering rule named beside it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from sollol_core.observability.snapshot import CacheView, HostView, RunnerView, SlotLearningView

from .. import fmt

TERM_LABELS = {
    "cpu_load": "CPU load",
    "gpu_free_mem": "GPU memory",
    "priority": "priority",
    "latency": "latency",
    "success_rate": "failures",
    "in_flight": "queue",
    "cold_model": "model not loaded",
    "cache": "cache miss",  # expected prefill seconds: the part of the prompt the host has not cached × its rate
}

SHORT_LABELS = {"cpu_load": "cpu", "gpu_free_mem": "gpu", "priority": "prio", "latency": "lat",
                "success_rate": "fail", "in_flight": "queue", "cold_model": "cold", "cache": "cache"}

STRATEGY_RULES = {
    "performance": "lowest score first",
    "p2c": "two random hosts, lower peak latency × (busy+1) ÷ weight first",
    "round_robin": "in turn",
    "priority": "lowest priority rank first, then model loaded, then least busy",
}


def _num(value: float) -> str:
    """Up to 3 decimals, no trailing zeros, no leading zero: .3, .125, 1.5, 0."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    if text in ("", "-0", "0"):
        return "0"
    return text[1:] if text.startswith("0.") else text


def rank_of(address: str, hosts: Sequence[HostView]) -> tuple[int, int]:
    """1-based rank by score among the hosts that take requests (0 when this one does not), and their count."""
    available = sorted((h for h in hosts if h.available), key=lambda h: (h.score, h.host))
    for i, h in enumerate(available, 1):
        if h.host == address:
            return i, len(available)
    return 0, len(available)


def _title(view: HostView, hosts: Sequence[HostView], *, show_weight: bool) -> list[str | tuple[str, str]]:
    rank, count = rank_of(view.host, hosts)
    parts: list[str | tuple[str, str]] = []
    if view.label:
        parts += [(fmt.clean(view.label), "bold $accent"), " "]
    parts += [(fmt.clean(view.host), "bold"), "  ", (view.state, fmt.STATE_STYLES.get(view.state, ""))]
    if show_weight and view.weight != 1:
        parts += ["  ", ("weight ", "$text-muted"), f"{view.weight:g}"]
    if rank:
        parts += ["  ", ("rank ", "$text-muted"), (f"{rank} of {count}", "bold")]
    else:
        parts += ["  ", ("takes no new requests", "$text-muted")]
    return parts


def compact_content(view: HostView, hosts: Sequence[HostView]) -> Content:
    """Two lines (three with an error), for small terminals: every term on one line."""
    pieces = " + ".join(f"{SHORT_LABELS.get(k, k)} {_num(v)}" for k, v in view.score_terms.items())
    divisor = f" ÷ {view.weight:g}" if view.weight != 1 else ""
    parts = _title(view, hosts, show_weight=True)
    parts += ["\n", ("score ", "$text-muted"), (_num(view.score), "bold $accent"), f" = ({pieces}){divisor}"]
    summary = compact_summary(view)
    if summary:
        parts += ["\n", *summary]
    if view.last_error:
        parts += ["\n", ("last error ", "$text-muted"), (fmt.clean(view.last_error), "$error")]
    return Content.assemble(*parts)


def model_slots_parts(view: HostView) -> list[str | tuple[str, str]]:
    """'llama3.2 2/4, qwen2.5 1/2~': each model's slots in use / its slots (~: learned from its answers)."""
    parts: list[str | tuple[str, str]] = []
    learned = {r.model for r in view.slot_learning if r.applies and r.slots is not None}
    for model, used, limit in view.slots_by_model:
        if parts:
            parts.append((", ", "$text-muted"))
        full = limit is not None and used >= limit
        text = fmt.slots(used, limit) + ("~" if model in learned else "")
        parts += [f"{fmt.short_model(model)} ", (text, "bold $warning" if full else "")]
    return parts


def slots_parts(view: HostView) -> list[str | tuple[str, str]]:
    """'3/4 in use: llama3.2 2/4, qwen2.5 1/4' (the host's slots, then each model's)."""
    parts: list[str | tuple[str, str]] = [(fmt.slots(view.slots_in_use, view.slots), "bold"),
                                          (" in use", "$text-muted")]
    models = model_slots_parts(view)
    return parts + [(": ", "$text-muted"), *models] if models else parts


def learning_line(row: SlotLearningView) -> list[str | tuple[str, str]]:
    """'learned llama3.2 2: 1 → 2: ran beside 1 other(s) without waiting; waited 3, beside 40, probes 4 (2 waited)'"""
    value = "—" if row.slots is None else str(row.slots)
    parts: list[str | tuple[str, str]] = [("learned ", "$text-muted"), f"{fmt.short_model(row.model)} ",
                                          (value, "bold $accent" if row.applies else "bold")]
    if not row.applies:
        parts.append((" (its num_parallel holds)", "$text-muted"))
    if row.last:
        parts += [(": ", "$text-muted"), row.last]
    parts += [("; waited ", "$text-muted"), str(row.waited), (", beside ", "$text-muted"), str(row.ran_beside),
              (", probes ", "$text-muted"), str(row.probes)]
    if row.probes_failed:
        parts += [(" (", "$text-muted"), (str(row.probes_failed), "$warning"), (" waited)", "$text-muted")]
    return parts


def runner_line(row: RunnerView) -> list[str | tuple[str, str]]:
    """'runner  llama3.2 num_ctx=4096, warm 0.05 s, load 0.9 s, reloads 3 (options 2, cold 1)'"""
    options = row.options if row.options is not None else "not known"
    parts: list[str | tuple[str, str]] = [("runner  ", "$text-muted"), f"{fmt.short_model(row.model)} ",
                                          (options, "bold" if row.confirmed else "")]
    if row.warm_load_s is not None:
        parts += [(", warm ", "$text-muted"), fmt.seconds(row.warm_load_s)]
    if row.load_s is not None:
        parts += [(", load ", "$text-muted"), fmt.seconds(row.load_s)]
    parts += [(", reloads ", "$text-muted"), (str(row.reloads), "bold $warning" if row.reloads else "")]
    if row.causes:
        parts += [(" (", "$text-muted"), ", ".join(f"{k} {n}" for k, n in sorted(row.causes.items())),
                  (")", "$text-muted")]
    return parts


def cache_lines(cache: Optional[CacheView]) -> list[list[str | tuple[str, str]]]:
    """The prompt-cache figures, a few short lines (each fits the narrow column beside the term table)."""
    label = ("cache   ", "$text-muted")
    if cache is None:
        return [[label, ("not tracked for this host", "$text-muted")]]
    rate = f"{cache.prefill_s_per_kchar:.3g} s" if cache.prefill_s_per_kchar is not None else "— s"
    hit = [label, ("hit ", "$text-muted"), (fmt.percent(cache.hit_rate), "bold $success" if cache.hit_rate else "bold"),
           (", saved ", "$text-muted"), (fmt.seconds(cache.prefill_saved_s), "bold"), (", ", "$text-muted"),
           rate, ("/1k chars", "$text-muted")]
    shadow = [("shadow  ", "$text-muted"), f"{cache.entries} ", ("slots, ", "$text-muted"),
              f"{fmt.count(cache.blocks)} ", ("blocks, ", "$text-muted"), fmt.size(cache.bytes)]
    hits = [("hits    ", "$text-muted"), f"{cache.predicted_hits} ", ("predicted, ", "$text-muted"),
            f"{cache.confirmed_hits} ", ("confirmed, ", "$text-muted"),
            (str(cache.corrections), "bold $warning" if cache.corrections else ""), (" corrected", "$text-muted")]
    return [hit, shadow, hits]


def extra_content(view: HostView) -> Content:
    """Slots, unfit models and the cache figures (beside the term table, under the sparklines)."""
    lines: list[list[str | tuple[str, str]]] = [[("slots   ", "$text-muted"), *slots_parts(view)]]
    if view.unfit_models:
        lines.append([("unfit   ", "$text-muted"), (fmt.clean(", ".join(view.unfit_models)), "$warning"),
                      (" (tried elsewhere)", "$text-muted")])
    lines += [learning_line(row) for row in view.slot_learning]
    lines += [runner_line(row) for row in view.runners]
    lines += cache_lines(view.cache)
    parts: list[str | tuple[str, str]] = []
    for i, line in enumerate(lines):
        if i:
            parts.append("\n")
        parts += line
    return Content.assemble(*parts)


def compact_summary(view: HostView) -> list[str | tuple[str, str]]:
    """One line for small terminals: what the table's cells do not say (per-model slots, savings, unfit)."""
    parts: list[str | tuple[str, str]] = []
    if view.slots_by_model:  # the table shows the host's total
        parts += [("slots ", "$text-muted"), *model_slots_parts(view)]
    cache = view.cache
    if cache is not None and (cache.hit_rate is not None or cache.prefill_saved_s):
        if parts:
            parts.append("  ")
        parts += [("cache saved ", "$text-muted"), (fmt.seconds(cache.prefill_saved_s), "bold"),
                  ("  hits ", "$text-muted"), f"{cache.confirmed_hits}/{cache.predicted_hits}"]
    if view.unfit_models:
        if parts:
            parts.append("  ")
        parts += [("unfit ", "$text-muted"), (fmt.clean(", ".join(view.unfit_models)), "$warning")]
    reloads = sum(r.reloads for r in view.runners)
    if reloads:
        if parts:
            parts.append("  ")
        parts += [("reloads ", "$text-muted"), (str(reloads), "$warning")]
    return parts


def full_content(view: HostView, hosts: Sequence[HostView], weights: dict, strategy: str) -> Content:
    """One line per term: weight × normalised value = part; their sum ÷ the host weight is the score."""
    terms = view.score_terms
    parts = _title(view, hosts, show_weight=False)
    parts += ["\n", (f"{strategy}: {STRATEGY_RULES.get(strategy, '')}", "$text-muted"), "\n",
              ("term        weight × value   = part", "$text-muted"), "\n"]
    for key, label in TERM_LABELS.items():
        if key not in terms:  # cold_model and cache exist only for a request naming a model (and a prompt)
            continue
        part = terms[key]
        weight = float(weights.get(key, 0.0))
        value = part / weight if weight else 0.0
        parts += [f"{label:<11} {weight:>6.2f} × {value:>7.3f} = ", (f"{part:.4f}", "bold"), "\n"]
    parts += [f"sum {sum(terms.values()):.4f} ÷ host weight {view.weight:g} = score ",
              (f"{view.score:.4f}", "bold $accent"), "\n"]
    tokens = f"{view.tokens_per_s:.1f} tok/s" if view.tokens_per_s else "— tok/s"
    parts += [("served ", "$text-muted"), f"{view.requests_total} ok, {view.failures_total} failed, {tokens}", "\n",
              ("models ", "$text-muted"), fmt.clean(", ".join(view.models_available)) or "not known yet"]
    if view.last_error:
        parts += ["\n", ("last error ", "$text-muted"), (fmt.clean(view.last_error), "$error")]
    return Content.assemble(*parts)


class HostDetail(Horizontal):
    """Score breakdown (left); the latency / throughput sparklines, slots and cache figures (right) of one host.

    In the compact form (small terminals) only the left part shows, with a one-line summary of the rest.
    """

    DEFAULT_CSS = """
    HostDetail { height: auto; }
    HostDetail #detail-text { height: auto; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    HostDetail #sparks { height: auto; width: 1fr; padding-left: 2; }
    HostDetail .spark-label { height: 1; color: $text-muted; }
    HostDetail Sparkline { height: 3; }
    HostDetail #detail-extra { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    HostDetail #latency-spark > .sparkline--max-color { color: $warning; }
    HostDetail #latency-spark > .sparkline--min-color { color: $success; }
    HostDetail #throughput-spark > .sparkline--max-color { color: $primary; }
    HostDetail #throughput-spark > .sparkline--min-color { color: $secondary; }
    """

    def __init__(self, *, full: bool = True, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.full = full
        self._key: object = None
        self._lines = 0
        self._extra_lines = 0
        self._history: tuple[tuple[float, ...], tuple[float, ...]] = ((-1.0,), ())

    def compose(self) -> ComposeResult:
        yield Static("no host selected", id="detail-text")
        with Vertical(id="sparks"):
            yield Static("latency", classes="spark-label", id="latency-label")
            yield Sparkline([], id="latency-spark")
            yield Static("requests/s", classes="spark-label", id="throughput-label")
            yield Sparkline([], id="throughput-spark")
            yield Static("", id="detail-extra")

    def show(self, view: Optional[HostView], hosts: Sequence[HostView], weights: dict, strategy: str) -> None:
        key = (view, tuple(hosts), tuple(sorted(weights.items())), strategy, self.full)
        if key == self._key:
            return
        self._key = key
        if view is None:
            content = Content("no host selected (add one with a)")
            extra = Content("")
            latency: tuple[float, ...] = ()
            throughput: tuple[float, ...] = ()
        else:
            content = full_content(view, hosts, weights, strategy) if self.full else compact_content(view, hosts)
            extra = extra_content(view) if self.full else Content("")
            latency, throughput = view.latency_history, view.throughput_history
        lines = content.plain.count("\n") + 1
        # lines never wrap (nowrap, ellipsis): the height changes only with the number of lines
        self.query_one("#detail-text", Static).update(content, layout=lines != self._lines)
        self._lines = lines
        extra_lines = extra.plain.count("\n") + 1
        self.query_one("#detail-extra", Static).update(extra, layout=extra_lines != self._extra_lines)
        self._extra_lines = extra_lines
        if (latency, throughput) == self._history:
            return  # the sparklines move once a second, not on every poll
        self._history = (latency, throughput)
        peak_latency = max(latency, default=0.0)
        peak_rps = max(throughput, default=0.0)
        self.query_one("#latency-label", Static).update(
            f"latency, last {len(latency)} s (peak {fmt.ms(peak_latency)})", layout=False)
        self.query_one("#throughput-label", Static).update(
            f"requests/s, last {len(throughput)} s (peak {peak_rps:g})", layout=False)
        self.query_one("#latency-spark", Sparkline).data = list(latency)
        self.query_one("#throughput-spark", Sparkline).data = list(throughput)
