"""No key and no token in any log line, answer, /api/stats, metrics or screen, through the real app on
127.0.0.1, whatever the requests carried (right, wrong, in the wrong header)."""

from __future__ import annotations

import logging

import pytest

from sollol_tui.widgets.queue_panel import queue_content
from sollol_tui.widgets.request_log import make_row

from helpers import CHAT_MODEL, USER, settled

pytestmark = pytest.mark.timeout(60)

KEY, TOKEN = "sk-never-shown-6a0b", "tok-never-shown-e41d"


def test_keys_and_the_token_appear_nowhere(sim_cluster, gateway, client, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, api_keys={KEY: {"name": "team-a", "requests_per_minute": 6}},
                     admin_token=TOKEN, batch_db=str(tmp_path / "b.db"), autobatch_enabled=False)
    http = client(sollol)
    chat = {"model": CHAT_MODEL, "messages": USER, "stream": False}
    answers = [
        http.post("/api/chat", json=chat, headers={"Authorization": f"Bearer {KEY}"}),
        http.post("/api/chat", json=chat, headers={"Authorization": f"Bearer {KEY}x"}),
        http.post("/api/chat", json=chat, headers={"Authorization": f"Bearer {KEY}"}),  # over its rate: 429
        http.post("/api/chat", json=chat, headers={"Authorization": f"Bearer {TOKEN}"}),
        http.post("/v1/chat/completions", json=chat, headers={"x-api-key": TOKEN + "x"}),
        http.get("/api/stats", headers={"Authorization": f"Bearer {KEY}"}),
        http.get("/api/stats", headers={"X-SOLLOL-Token": TOKEN[:-1]}),
        http.post("/api/embed/batch", json={"model": "nomic-embed-text", "docs": ["a"]},
                  headers={"Authorization": f"Bearer {KEY}"}),
        http.get("/api/batch-status", headers={"Authorization": f"Bearer {TOKEN}"}),
    ]
    assert [r.status_code for r in answers] == [200, 401, 429, 200, 401, 401, 401, 200, 200]
    stats = http.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).text
    metrics = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    health = http.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).text
    records = settled(sollol)
    snapshot = sollol.snapshot()
    screen = "\n".join(" ".join(make_row(r).texts) for r in records) + \
        queue_content(snapshot.queue, snapshot.clients).plain
    shown = [*(r.text for r in answers), *(str(dict(r.headers)) for r in answers), stats, metrics, health,
             repr(records), repr(snapshot), screen, caplog.text, repr(sollol.config), str(sollol.get_status())]
    for text in shown:
        for secret in (KEY, TOKEN, TOKEN[:-1]):
            assert secret not in text
    assert '"team-a"' in stats and 'client="team-a"' in metrics and "team-a" in screen
