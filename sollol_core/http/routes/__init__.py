"""The gateway's routes; each module builds an access.GatewayRouter from the narrow parts it uses.

    ollama      /, /api/chat, /api/generate (and the unload they carry), /api/embed, /api/embeddings,
                /api/show, /api/version, /api/tags, /api/ps
    management  /api/pull, /api/push, /api/create, /api/copy, /api/delete, /api/blobs/{digest}
    openai      /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses,
                /v1/audio/transcriptions, /v1/models
    anthropic   /v1/messages
    sollol      /api/health, /api/stats, /metrics
    operator    /api/hosts (add, remove, drain, undrain, priority, weight), /api/routing
    batch       /api/embed/batch, /api/batch/{job_id}, /api/batch-status, /api/batch/trigger
"""
