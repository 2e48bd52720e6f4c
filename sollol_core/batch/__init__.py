"""Batch embeddings: a durable SQLite queue, the autobatch loop, and Dask to run the chunks.

    store      the queue (jobs, documents, results) in one SQLite file, exactly once across crashes
    task       the Dask task: one Ollama /api/embed call (standard library only)
    runner     Dask: a LocalCluster started with the first batch, or an external scheduler
    autobatch  when batches start, and which host embeds each chunk
    deps       BatchDeps: the parts of the core the batch side uses (config, registry, queue, slots, ...)
    manager    BatchManager: all of the above, started and stopped by the service
(The HTTP endpoints are in http/routes/batch.py.)
"""

from .deps import BatchDeps
from .manager import BatchManager

__all__ = ["BatchDeps", "BatchManager"]
