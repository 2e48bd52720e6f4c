"""The shadow of the hosts' prompt caches: slot choice as llama-server makes it, bounded memory, and the
corrections the hosts' answers bring."""

from __future__ import annotations

import math
import random

import pytest

from sollol_core.config import CacheSettings
from sollol_core.observability.snapshot import CacheView
from sollol_core.prompt_cache.canonical import extend_with_answer, prompt_key
from sollol_core.prompt_cache.feedback import Correction, CorrectionKind, Feedback
from sollol_core.prompt_cache.key import PromptKey
from sollol_core.prompt_cache.shadow import CacheShadow
from sollol_core.prompt_cache.shadow_state import CacheMatch

BC = 32
M = "m:latest"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def shadow(**settings) -> tuple[CacheShadow, Clock]:
    clock = Clock()
    return CacheShadow(CacheSettings(**settings), clock=clock), clock


def words(seed: int, n: int) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]) for _ in range(n))


def chat(*contents: str, system: str = "", model: str = "m") -> PromptKey:
    msgs = [{"role": "system", "content": system}] if system else []
    for i, c in enumerate(contents):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": c})
    return prompt_key("/api/chat", {"model": model, "messages": msgs}, block_chars=BC)


def conv(seed: int, turns: int = 1, n: int = 60) -> PromptKey:
    return chat(*[words(seed * 100 + i, n) for i in range(2 * turns - 1)])


# ------------------------------------------------------------------------------------------ slot choice


def test_a_host_never_shadowed_has_empty_slots():
    sh, _ = shadow()
    m = sh.match("h1", conv(1), 3)
    assert m == CacheMatch("h1", M, m.chars, 0, 0.0, 0, False, False, math.inf, 3, 0, False)
    assert sh.host_view("h1")["entries"] == 0 and sh.host_view("h1")["hit_rate"] is None


def test_next_turn_reuses_the_slot_holding_the_conversation():
    sh, clock = shadow()
    a, b = conv(1), conv(2)
    pa = sh.place("h", a, 2)
    pb = sh.place("h", b, 2)
    assert (pa.slot, pb.slot) == (0, 1)
    answer = words(77, 30)
    sh.complete(pa, answer=extend_with_answer(a, answer))
    sh.complete(pb)
    clock.t += 5
    a2 = chat(words(100, 60), answer, "and then?")
    m = sh.match("h", a2, 2)
    assert m.slot == 0 and m.same_conversation and not m.evicts_active
    # the whole prompt and answer (whole blocks) are reused: all that the next turn adds is new
    ext = extend_with_answer(a, answer)
    assert m.cached_chars == ext.chars // BC * BC
    assert m.fraction == pytest.approx(m.cached_chars / a2.chars) and m.fraction > 0.8
    assert m.victim_idle_s == 5 and m.free_slots == 2 and m.active == 2


def test_below_min_cover_the_least_recently_used_slot_is_taken():
    sh, clock = shadow(min_cover=0.1, active_s=60)
    a, b, c = conv(1), conv(2), conv(3)
    sh.complete(sh.place("h", a, 2))
    clock.t += 1
    sh.complete(sh.place("h", b, 2))
    clock.t += 1
    m = sh.match("h", c, 2)
    assert m.slot == 0 and m.cached_chars < 0.1 * c.chars  # slot 0 (a) was used least recently
    assert m.evicts_active and m.victim_idle_s == 2
    clock.t += 100  # beyond active_s: the conversations are over, taking the slot evicts nothing alive
    m = sh.match("h", c, 2)
    assert m.slot == 0 and not m.evicts_active and m.active == 0


def test_longest_common_prefix_wins_only_above_min_cover():
    system = words(9, 120)  # a long shared system prompt
    sh, clock = shadow(min_cover=0.1)
    with_system = chat(words(1, 20), system=system)
    other = conv(2)
    sh.complete(sh.place("h", other, 2))  # slot 0: an unrelated prompt, used first (LRU)
    clock.t += 1
    sh.complete(sh.place("h", with_system, 2))  # slot 1: the system prompt
    clock.t += 1
    same_system = chat(words(3, 20), system=system)
    m = sh.match("h", same_system, 2)
    assert m.slot == 1 and m.fraction > 0.5 and not m.same_conversation
    assert m.evicts_active  # another conversation, used a second ago, would be overwritten
    # the same shared part, but a prompt so long that it covers under 10%: llama-server takes the LRU slot
    long_prompt = chat(words(3, 20) + words(4, 3000), system=system)
    m = sh.match("h", long_prompt, 2)
    assert m.slot == 0 and m.cached_chars < 0.1 * long_prompt.chars
    sh2, _ = shadow(min_cover=0.0)
    sh2.complete(sh2.place("h", other, 2))
    sh2.complete(sh2.place("h", with_system, 2))
    assert sh2.match("h", long_prompt, 2).slot == 1  # any common prefix counts with min_cover 0


def test_busy_slots_are_not_chosen():
    sh, _ = shadow()
    a = conv(1)
    sh.complete(sh.place("h", a, 2))
    busy = sh.place("h", chat(words(100, 60), "x", "y"), 2)  # a's next turn takes slot 0 and is in flight
    assert busy.slot == 0 and busy.cached_chars > 0
    m = sh.match("h", chat(words(100, 60), "x", "z"), 2)
    assert m.slot == 1 and m.cached_chars == 0 and m.free_slots == 1 and m.active == 1
    sh.place("h", conv(5), 2)
    full = sh.match("h", conv(6), 2)
    assert (full.slot, full.free_slots, full.cached_chars) == (-1, 0, 0)
    none = sh.place("h", conv(6), 2)
    assert none.slot == -1
    sh.complete(none)  # touches no slot
    sh.complete(busy)
    assert sh.match("h", chat(words(100, 60), "x", "y", "more"), 2).slot == 0


def test_slots_count_is_honoured():
    sh, clock = shadow()
    keys = [conv(i) for i in range(4)]
    for k in keys[:3]:
        sh.complete(sh.place("h", k, 3))
        clock.t += 1
    for i, k in enumerate(keys[:3]):
        m = sh.match("h", k, 3)
        assert m.slot == i and m.cached_chars == k.chars
    # a fourth conversation evicts the least recently used (slot 0, conversation 0)
    sh.complete(sh.place("h", keys[3], 3))
    assert sh.match("h", keys[0], 3).cached_chars == 0
    assert sh.match("h", keys[1], 3).cached_chars == keys[1].chars
    # one slot: every new conversation overwrites the last
    one, _ = shadow()
    one.complete(one.place("h", keys[0], 1))
    one.complete(one.place("h", keys[1], 1))
    assert one.match("h", keys[0], 1).cached_chars == 0
    assert one.match("h", keys[1], 1).cached_chars == keys[1].chars
    # fewer slots than before: the extra slots are forgotten when the next prompt is placed
    sh.place("h", conv(9), 1)
    assert sh.host_view("h")["entries"] == 0 and len(sh.slot_contents("h", M)) == 1
    # models have their own slots
    other_model = chat(words(1, 10), model="other")
    assert sh.match("h", other_model, 2).free_slots == 2


def test_release_keeps_the_prompt_unless_it_failed():
    sh, _ = shadow()
    a = conv(1)
    sh.release(sh.place("h", a, 1), failed=False)
    assert sh.match("h", a, 1).cached_chars == a.chars
    sh.release(sh.place("h", a, 1), failed=True)
    assert sh.match("h", a, 1).cached_chars == 0 and sh.host_view("h")["entries"] == 0


def test_complete_and_release_count_once():
    sh, _ = shadow()
    p = sh.place("h", conv(1), 1)
    sh.complete(p)
    sh.complete(p)
    sh.release(p, failed=True)
    assert sh.host_view("h")["entries"] == 1 and sh.match("h", conv(1), 1).cached_chars > 0


def test_displaced_prompts_are_restored_from_host_ram():
    a, b = conv(1), conv(2)
    sh, _ = shadow(displaced_per_host=4)
    sh.complete(sh.place("h", a, 1))
    sh.complete(sh.place("h", b, 1))  # a is displaced to host RAM
    m = sh.match("h", a, 1)
    assert m.displaced and m.cached_chars == a.chars and m.slot == 0
    assert sh.host_view("h")["displaced"] == 1
    p = sh.place("h", a, 1)  # restored: b goes to RAM in its turn
    sh.complete(p)
    assert sh.host_view("h")["displaced"] == 1 and sh.match("h", b, 1).displaced
    none, _ = shadow(displaced_per_host=0)
    none.complete(none.place("h", a, 1))
    none.complete(none.place("h", b, 1))
    m = none.match("h", a, 1)
    assert not m.displaced and m.cached_chars < 0.1 * a.chars
    # the RAM cache is bounded by displaced_per_host
    sh3, _ = shadow(displaced_per_host=3)
    for i in range(10):
        sh3.complete(sh3.place("h", conv(i), 1))
    assert sh3.host_view("h")["displaced"] == 3
    assert sh3.match("h", conv(8), 1).displaced and not sh3.match("h", conv(3), 1).displaced


# ------------------------------------------------------------------------------------------ memory


def test_memory_is_bounded_under_ten_thousand_conversations():
    cap = 2000
    sh, clock = shadow(max_blocks_per_host=cap, displaced_per_host=64)
    rnd = random.Random(4)
    alive: list[PromptKey] = []
    peak = 0
    for i in range(10_000):
        if alive and rnd.random() < 0.3:
            k = alive[rnd.randrange(len(alive))]
            k = extend_with_answer(k, words(i, 8))
        else:
            k = chat(f"conversation {i} " + words(i, rnd.randint(5, 120)))
        p = sh.place("h", k, 4)
        sh.complete(p, answer=extend_with_answer(k, words(i + 1, 10)))
        alive.append(k)
        if len(alive) > 50:
            alive.pop(0)
        clock.t += 0.01
        peak = max(peak, sh.host_view("h")["blocks"]) if i % 97 == 0 else peak
    view = sh.host_view("h")
    assert view["blocks"] <= cap and peak <= cap
    assert view["displaced"] <= 64 and view["entries"] <= 4
    assert view["placements"] == 10_000
    # bytes: at least the 8 bytes per block kept, and no more than the blocks plus per-entry overhead
    assert cap * 0.5 * 8 <= view["bytes"] <= view["blocks"] * 8 + (64 + 4) * 400 + 4000
    assert 0 < view["hit_rate"] < 1


def test_a_prompt_longer_than_the_budget_is_kept_as_its_prefix():
    sh, _ = shadow(max_blocks_per_host=64)
    huge = chat(words(1, 2000))
    assert len(huge.blocks) > 64
    sh.complete(sh.place("h", huge, 1))
    assert sh.host_view("h")["blocks"] == 64
    assert sh.match("h", huge, 1).cached_chars == 64 * BC  # the kept prefix still matches


def test_memory_trim_drops_displaced_first_then_least_recent_slots():
    sh, clock = shadow(max_blocks_per_host=64, displaced_per_host=8)
    ks = [chat(f"c{i} " + words(i, 30)) for i in range(3)]
    assert [len(k.blocks) for k in ks] == [6, 6, 6]
    for k in ks:
        sh.complete(sh.place("h", k, 2))  # ks[2] displaces ks[0] from slot 0
        clock.t += 1
    assert sh.host_view("h")["displaced"] == 1
    big = chat("big " + words(50, 300))
    assert len(big.blocks) == 50
    sh.complete(sh.place("h", big, 2))  # takes slot 1, displacing ks[1]: 6 + 6 + 6 + 50 > 64
    clock.t += 1
    view = sh.host_view("h")
    assert view["blocks"] == 62 and view["displaced"] == 1  # the oldest displaced prompt (ks[0]) went first
    assert sh.match("h", ks[1], 2).displaced and sh.match("h", ks[0], 2).cached_chars < ks[0].chars
    bigger = chat("big " + words(50, 350))
    assert len(bigger.blocks) == 58
    sh.complete(sh.place("h", bigger, 2))  # extends big in slot 1: 6 (ks[2]) + 6 (ks[1] displaced) + 58
    clock.t += 1
    view = sh.host_view("h")
    assert view["blocks"] == 64 and view["displaced"] == 0
    other = chat(words(7, 12), model="other")
    assert 1 <= len(other.blocks) <= 6
    sh.complete(sh.place("h", other, 1))  # 6 + 58 + other > 64: the least recent slot (ks[2]) goes
    view = sh.host_view("h")
    assert view["blocks"] == 58 + len(other.blocks)
    assert sh.match("h", ks[2], 2).cached_chars == 0
    assert sh.match("h", bigger, 2).cached_chars == bigger.chars
    assert sh.match("h", other, 1).cached_chars == other.chars


# ------------------------------------------------------------------------------------------ feedback


def learn_rate(sh: CacheShadow, host: str, model_key: PromptKey, s_per_token: float = 0.002,
               tokens_per_char: float = 0.25, times: int = 1) -> None:
    for i in range(times):
        k = chat(f"cold sample {host} {i} " + words(900 + i, 200), model=model_key.model.split(":")[0])
        p = sh.place(host, k, 8)
        count = int(k.chars * tokens_per_char)
        c = sh.observe(p, Feedback(count, count * s_per_token, 0.0, None))
        assert c.kind is CorrectionKind.COLD
        sh.release(p, failed=True)


def test_prefill_rate_is_learned_from_cold_samples():
    sh, _ = shadow(default_prefill_s_per_kchar=0.5)
    k = conv(1)
    assert sh.prefill_s("h", M, 1000) == pytest.approx(0.5)  # nothing measured: the default
    assert sh.prefill_rate("h") is None
    p = sh.place("h", k, 1)
    count = k.chars // 4
    c = sh.observe(p, Feedback(prompt_eval_count=count, prompt_eval_duration_s=count * 0.004, load_duration_s=0.0))
    assert c == Correction(CorrectionKind.COLD, 0.0, None, 0, False)
    # 0.25 tokens per char x 0.004 s per token = 1 ms per char
    assert sh.prefill_s("h", M, 1000) == pytest.approx(count / k.chars * 0.004 * 1000)
    assert sh.prefill_rate("h") == pytest.approx(count / k.chars * 4.0)
    sh.release(p, failed=True)
    # EWMA: a second, slower cold sample moves the rate a fifth of the way
    p = sh.place("h", conv(2), 1)
    count2 = conv(2).chars // 4
    sh.observe(p, Feedback(count2, count2 * 0.014, None, None))
    spt = 0.004 + 0.2 * (0.014 - 0.004)
    tpc = count / k.chars + 0.2 * (count2 / conv(2).chars - count / k.chars)
    assert sh.prefill_s("h", M, 1000) == pytest.approx(tpc * spt * 1000)


def test_prefill_rate_falls_back_to_other_models_then_other_hosts():
    sh, _ = shadow(default_prefill_s_per_kchar=0.5)
    learn_rate(sh, "a", chat("x", model="m1"), s_per_token=0.004, tokens_per_char=0.25)  # 1 ms per char
    learn_rate(sh, "b", chat("x", model="m1"), s_per_token=0.012, tokens_per_char=0.25)  # 3 ms per char
    a_rate = sh.prefill_s("a", "m1:latest", 1000)
    b_rate = sh.prefill_s("b", "m1:latest", 1000)
    assert a_rate == pytest.approx(1.0, rel=0.05) and b_rate == pytest.approx(3.0, rel=0.05)
    assert sh.prefill_s("a", "m2:latest", 1000) == pytest.approx(a_rate)  # the host's other model
    assert sh.prefill_s("c", "m1:latest", 1000) == pytest.approx((a_rate + b_rate) / 2)  # the measured hosts
    assert sh.prefill_s("c", "m1:latest", 0) == 0.0


def two_conversations(sh: CacheShadow, clock: Clock) -> tuple[PromptKey, PromptKey]:
    """Conversations a (slot 0) and b (slot 1) on host h, with the prefill rate measured."""
    learn_rate(sh, "h", conv(0))
    a, b = conv(1, n=200), conv(2, n=200)
    sh.complete(sh.place("h", a, 2))
    sh.complete(sh.place("h", b, 2))
    clock.t += 1
    return a, b


def test_observed_no_reuse_where_reuse_was_predicted_forgets_the_models_slots():
    sh, clock = shadow()
    a, b = two_conversations(sh, clock)
    a2 = chat(words(100, 200), "answer", "next question")
    p = sh.place("h", a2, 2)
    assert p.fraction > 0.5 and p.hit
    before = sh.host_view("h")
    count = int(a2.chars * 0.25)
    c = sh.observe(p, Feedback(count, count * 0.002, 0.0, None))  # the whole prompt evaluated: nothing reused
    assert c.kind is CorrectionKind.LOST and c.corrected and c.observed == pytest.approx(0.0, abs=0.01) and c.forgot == 1
    assert sh.match("h", b, 2).cached_chars == 0  # b's slot is unknown now
    sh.complete(p)
    view = sh.host_view("h")
    assert view["corrections"] == before["corrections"] + 1
    assert view["hits"] == before["hits"] - 1 and view["prefill_saved_s"] == before["prefill_saved_s"]
    assert sh.match("h", a2, 2).cached_chars == a2.chars  # the slot that served it holds it now


def test_confirmed_reuse_counts_and_credits_the_saved_prefill():
    sh, clock = shadow()
    a, _ = two_conversations(sh, clock)
    a2 = chat(words(100, 200), "answer", "next question")
    p = sh.place("h", a2, 2)
    count = int(a2.chars * 0.25)
    new_tokens = count * (1 - p.fraction)
    c = sh.observe(p, Feedback(count, new_tokens * 0.002, 0.0, None))
    assert c.kind is CorrectionKind.CONFIRMED and not c.corrected and c.observed == pytest.approx(p.fraction, abs=0.01)
    saved_before = sh.host_view("h")["prefill_saved_s"]
    sh.complete(p)
    view = sh.host_view("h")
    assert view["confirmed_hits"] == 1 and view["corrections"] == 0
    assert view["prefill_saved_s"] - saved_before == pytest.approx(sh.prefill_s("h", M, p.observed_chars))
    assert p.observed_chars == pytest.approx(p.cached_chars, rel=0.02)


def test_load_duration_means_the_model_was_reloaded():
    sh, clock = shadow()
    a, b = two_conversations(sh, clock)
    other = chat(words(5, 30), model="other")
    sh.complete(sh.place("h", other, 1))
    p = sh.place("h", chat(words(100, 200), "answer", "q"), 2)
    count = 100
    c = sh.observe(p, Feedback(count, count * 0.002, load_duration_s=1.5))
    assert c.kind is CorrectionKind.RELOADED and c.corrected and c.forgot == 1
    assert sh.match("h", b, 2).cached_chars == 0
    assert sh.match("h", other, 1).cached_chars == other.chars  # other models keep their slots


def test_reuse_observed_where_none_was_predicted_is_counted():
    sh, _ = shadow()
    learn_rate(sh, "h", conv(0))
    k = conv(7, n=200)
    p = sh.place("h", k, 2)
    assert p.cached_chars == 0 and not p.hit
    count = int(k.chars * 0.25)
    c = sh.observe(p, Feedback(count, count * 0.1 * 0.002, 0.0, None))  # 90% reused: the host knew it
    assert c.kind is CorrectionKind.UNEXPECTED and c.corrected and c.observed == pytest.approx(0.9, abs=0.01)
    view = sh.host_view("h")
    assert view["corrections"] == 1 and view["hits"] == 1
    assert sh.prefill_s("h", M, 1000) == pytest.approx(0.25 * 0.002 * 1000, rel=0.05)  # not learned from


def test_a_count_of_only_the_new_tokens_is_read_as_reuse():
    sh, clock = shadow()
    two_conversations(sh, clock)
    a2 = chat(words(100, 200), "answer", "next question")
    p = sh.place("h", a2, 2)
    whole = a2.chars * 0.25
    new = int(whole * (1 - p.fraction))
    c = sh.observe(p, Feedback(new, new * 0.002, 0.0, None))  # count = only the newly evaluated tokens
    assert c.kind is CorrectionKind.CONFIRMED and c.observed == pytest.approx(p.fraction, abs=0.02)


def test_openai_answers_correct_by_time_to_first_token():
    sh, clock = shadow()
    learn_rate(sh, "h", conv(0), s_per_token=0.02)  # 5 ms per char: 4,000 chars take 20 s cold
    a = chat(words(1, 1000))
    sh.complete(sh.place("h", a, 2))
    b = conv(2)
    sh.complete(sh.place("h", b, 2))
    a2 = chat(words(1, 1000), "ok", "more")
    p = sh.place("h", a2, 2)
    cold = sh.prefill_s("h", M, a2.chars)
    c = sh.observe(p, Feedback(ttft_s=cold * 0.95))
    assert c.kind is CorrectionKind.LOST and c.corrected
    assert sh.match("h", b, 2).cached_chars == 0
    sh.complete(p)
    p = sh.place("h", chat(words(1, 1000), "ok", "more", "fine", "again"), 2)
    assert sh.observe(p, Feedback(ttft_s=0.2)).kind is CorrectionKind.CONFIRMED
    assert sh.observe(p, Feedback(ttft_s=0.2)).kind is CorrectionKind.NONE  # once per placement


def test_ttft_teaches_a_rate_where_no_native_answer_did():
    sh, _ = shadow(default_prefill_s_per_kchar=0.5)
    k = chat(words(1, 1000))
    p = sh.place("h", k, 1)
    assert sh.observe(p, Feedback(ttft_s=k.chars * 0.002)).kind is CorrectionKind.COLD
    assert sh.prefill_rate("h") == pytest.approx(2.0)
    small = chat("hi")
    assert sh.observe(sh.place("h2", small, 1), Feedback(ttft_s=5.0)).kind is CorrectionKind.NONE  # too short to tell


def test_drop_host_and_drop_model():
    sh, clock = shadow(displaced_per_host=4)
    a, b = two_conversations(sh, clock)
    other = chat(words(5, 30), model="other")
    sh.complete(sh.place("h", other, 1))
    sh.complete(sh.place("h2", a, 1))
    rate = sh.prefill_rate("h")
    sh.drop_model("h", M)
    assert sh.match("h", a, 2).cached_chars == 0 and sh.match("h", other, 1).cached_chars == other.chars
    sh.complete(sh.place("h", a, 2))
    sh.drop_host("h")
    view = sh.host_view("h")
    assert (view["entries"], view["blocks"], view["displaced"]) == (0, 0, 0)
    assert sh.match("h", other, 1).cached_chars == 0
    assert sh.match("h2", a, 1).cached_chars == a.chars  # other hosts untouched
    assert sh.prefill_rate("h") == rate and view["placements"] > 0  # the machine's figures stay
    sh.forget_host("h")
    assert sh.host_view("h")["placements"] == 0 and sh.prefill_rate("h") is None


def test_a_request_in_flight_through_a_drop_keeps_its_slot_busy():
    sh, _ = shadow()
    a = conv(1)
    p = sh.place("h", a, 1)
    sh.drop_host("h")
    assert sh.match("h", conv(2), 1).slot == -1  # still busy: never more in flight than slots
    sh.complete(p)
    assert sh.match("h", a, 1).cached_chars == a.chars


def test_views():
    sh, clock = shadow()
    a, _ = two_conversations(sh, clock)
    view = sh.cache_view("h")
    assert isinstance(view, CacheView)
    hv = sh.host_view("h")
    assert (view.entries, view.blocks, view.bytes, view.hit_rate) == (hv["entries"], hv["blocks"], hv["bytes"],
                                                                      hv["hit_rate"])
    assert view.entries == 2 and view.blocks == len(a.blocks) + len(conv(2, n=200).blocks)
    assert view.prefill_s_per_kchar == pytest.approx(0.5, rel=0.05)
    assert sh.active_conversations("h", M) == 2
    clock.t += 10_000
    assert sh.active_conversations("h", M) == 0


def test_two_shadows_fed_the_same_sequence_agree():
    def run() -> list:
        sh, clock = shadow(displaced_per_host=8, max_blocks_per_host=400)
        rnd = random.Random(21)
        keys = [conv(i, n=rnd.randint(10, 80)) for i in range(30)]
        out, open_ = [], []
        for step in range(600):
            clock.t += rnd.random()
            op = rnd.random()
            if op < 0.5 or not open_:
                host = rnd.choice(["h1", "h2"])
                k = rnd.choice(keys)
                out.append(sh.match(host, k, 3))
                open_.append(sh.place(host, k, 3))
            elif op < 0.8:
                p = open_.pop(rnd.randrange(len(open_)))
                sh.complete(p, answer=extend_with_answer(p.key, words(step, 5)))
            elif op < 0.9:
                p = open_.pop(rnd.randrange(len(open_)))
                sh.release(p, failed=rnd.random() < 0.5)
            else:
                p = open_[rnd.randrange(len(open_))]
                count = max(1, p.key.chars // 4)
                out.append(sh.observe(p, Feedback(count, count * 0.001 * rnd.random(), 0.0, None)))
        out.append(sh.host_view("h1"))
        out.append(sh.host_view("h2"))
        return out

    first, second = run(), run()
    assert first == second
    assert any(isinstance(x, CacheMatch) and x.cached_chars > 0 for x in first)


def test_a_short_load_duration_is_scheduling_not_a_reload():
    """Real Ollama 0.5.4 answers load_duration ~0.15 s with the model loaded: the cache is still there."""
    sh, _ = shadow()
    first = conv(1, turns=1, n=400)
    p = sh.place("h:1", first, 1)
    count = first.chars // 4
    sh.observe(p, Feedback(count, count * 0.002, load_duration_s=4.5))  # a real load: cold
    sh.complete(p)
    second = chat(words(100, 400), "an answer", "and then?")
    p2 = sh.place("h:1", second, 1)
    assert p2.cached_chars > 0
    c = sh.observe(p2, Feedback(second.chars // 4, 0.01, load_duration_s=0.144))
    assert c.kind is CorrectionKind.CONFIRMED and sh.host_view("h:1")["hit_rate"] == 0.5
