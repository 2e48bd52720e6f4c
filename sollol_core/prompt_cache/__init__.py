"""sollol_core.prompt_cache: what each host's slots have cached, as SOLLOL can tell it.

key (PromptKey, chained block hashes and their common prefix), render/ (a request rendered into the canonical
text, one module per API family), canonical (prompt_key, session_key, extend_with_answer), shadow
(CacheShadow: the shadow of every host's slots), shadow_state (what it keeps per host and slot, and the
CacheMatch and Placed it hands out), feedback (what an answer says: Feedback, Correction, CorrectionKind),
prefill_rates (each host's prefill rate, learned from those answers), liveness (still_going: whether a slot idle for a while holds a
conversation that will come back, from the gaps between turns the shadow has seen).
"""
