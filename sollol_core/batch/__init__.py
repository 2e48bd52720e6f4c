"""Batch embeddings: a durable SQLite queue, the autobatch loop, and Dask to run the chunks.

    store      the queue (jobs, documents, results) in one SQLite file, exactly once across crashes
    task       the Dask task: one Ollama /api/embed call (standard library only)
    runner     Dask: a LocalCluster started with the first batch, or an external scheduler
    autobatch  when batches start, and which host embeds each chunk
    manager    BatchManager: all of the above, started and stopped with SOLLOL
    api        the HTTP endpoints
"""

from .manager import BatchManager

__all__ = ["BatchManager"]
