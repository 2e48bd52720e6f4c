"""The batch panel: queue depth, each job with a progress bar, documents per second."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from sollol_core.observability.snapshot import BatchJobView, BatchView

BAR_WIDTH = 20
JOB_STYLES = {"done": "$success", "failed": "bold $error", "in_progress": "bold $primary", "queued": "$text-muted"}


def progress_bar(done: int, failed: int, total: int, width: int = BAR_WIDTH) -> list[tuple[str, str]]:
    """A bar of `width` cells: done in the success colour, failed in the error colour, the rest dim."""
    if total <= 0:
        return [("░" * width, "$text-muted")]
    ok_cells = round(width * min(done, total) / total)
    failed_cells = min(width - ok_cells, round(width * min(failed, total) / total))
    rest = width - ok_cells - failed_cells
    return [("█" * ok_cells, "$success"), ("█" * failed_cells, "$error"), ("░" * rest, "$text-muted")]


def job_parts(job: BatchJobView) -> list[str | tuple[str, str]]:
    finished = job.done + job.failed
    pct = 100 * finished / job.total if job.total else 0.0
    parts: list[str | tuple[str, str]] = [(f"{job.job_id[:12]:<12} ", "bold")]
    parts += progress_bar(job.done, job.failed, job.total)
    parts += [f" {pct:3.0f}% {finished}/{job.total}"]
    if job.failed:
        parts += [" ", (f"{job.failed} failed", "$error")]
    if job.docs_per_s:
        parts += [f"  {job.docs_per_s:.1f} docs/s"]
    parts += ["  ", (job.status.replace("_", " "), JOB_STYLES.get(job.status, ""))]
    return parts


def batch_content(batch: BatchView) -> Content:
    if not batch.available:
        return Content.assemble(
            ("Batch queue not running", "bold $text-muted"), "\n",
            ("The queue is empty: nothing has been submitted to /api/embed/batch.", "$text-muted"),
        )
    parts: list[str | tuple[str, str]] = [
        ("queue ", "$text-muted"), (str(batch.queued), "bold"),
        ("  in progress ", "$text-muted"), (str(batch.in_progress), "bold"),
        ("  done ", "$text-muted"), (str(batch.done), "bold $success"),
        ("  failed ", "$text-muted"), (str(batch.failed), "bold $error" if batch.failed else "bold"),
        ("  ", ""), (f"{batch.docs_per_s:.1f}", "bold"), (" docs/s", "$text-muted"),
    ]
    if not batch.jobs:
        parts += ["\n", ("The queue is empty.", "$text-muted")]
    for job in batch.jobs:
        parts.append("\n")
        parts += job_parts(job)
    return Content.assemble(*parts)


class BatchPanel(Static):
    DEFAULT_CSS = """
    BatchPanel { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._last: BatchView | None = None

    def show(self, batch: BatchView) -> None:
        if batch != self._last:
            lines_changed = self._last is None or len(batch.jobs) != len(self._last.jobs) or \
                batch.available != self._last.available
            self._last = batch
            self.update(batch_content(batch), layout=lines_changed)
