"""The real embedded llama.cpp server on SmolLM2: JSON-schema decisions and prefix reuse."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from asap.agent.llm.client import chat_model, json_model, timed_invoke
from asap.agent.llm.decision import decision_schema, label_grammar, parse_decision
from asap.agent.llm.server import EmbeddedServer
from asap.agent.prompt import PromptBuilder, PromptLog


@pytest.mark.e2e
def test_smollm2_decides_through_the_schema_and_reuses_the_prefix(ledger, toy_space):
    study = ledger.create_study("llm", toy_space, metric="loss", direction="minimize", workload="toy")
    builder, log = PromptBuilder(study, tools_text="- optuna_suggest\n- nevergrad_suggest"), PromptLog()
    with EmbeddedServer(say=lambda m: None) as srv:
        chat = chat_model(srv.base_url, "default")
        schema = json_model(chat, decision_schema(["A", "B"]))
        grammar = json_model(chat, {}, grammar=label_grammar(["A", "B"]))
        for r in range(1, 4):
            llm = schema if r == 1 else grammar  # the portable form, then llama.cpp's exact one
            cfg = {"x": 1.0 / r, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}
            proposals = [("optuna:tpe", cfg), ("nevergrad:NGOpt", {**cfg, "x": -cfg["x"]})]
            current = builder.round_text(r, proposals)
            answer = timed_invoke(llm, [HumanMessage(builder.prompt(log, current))], study=study,
                                  protocol="json", trial_number=r)
            decision = parse_decision(answer.content, ["A", "B"])
            tid = study.start_trial(cfg, tool="optuna:tpe")
            trial = study.finish_trial(tid, status="complete", metrics={"loss": cfg["x"]})
            log = builder.close(log, builder.row(r, decision.choice or "stop", trial), 24)
    calls = study.timings("llm_call")
    assert len(calls) == 3 and all(c["prompt_tokens"] > 200 for c in calls)
    # One JSON string a decision; the grammar leaves no code fence or whitespace to decode.
    assert calls[0]["completion_tokens"] <= 10
    assert all(c["completion_tokens"] <= 4 for c in calls[1:])
    # The stable prefix is reused: almost all of the previous call's prompt comes from the KV cache
    # (what is new each round is the line of the round just closed and the next round's block,
    # a few dozen tokens for two proposals).
    for before, after in zip(calls, calls[1:], strict=False):
        assert after["cached_tokens"] >= before["prompt_tokens"] - 120


@pytest.mark.e2e
def test_a_compacted_log_is_read_from_the_cache(ledger, toy_space):
    """Compaction only deletes rows, and the embedded server shifts cached chunks into their new
    places (n_cache_reuse): the first call after a compaction recomputes its block, not the
    log (a summary line in their place made everything after it cold). Twice: at the second
    compaction llama.cpp's host-memory prompt cache used to swap in the state it had saved at
    the first (an older log, without the newest rows), so the embedded server runs without it."""
    study = ledger.create_study("cmp", toy_space, metric="loss", direction="minimize",
                                workload="toy")
    builder, log = PromptBuilder(study, tools_text="- optuna_suggest\n- nevergrad_suggest"), PromptLog()

    def grow(log: PromptLog, rounds: range) -> PromptLog:
        for r in rounds:
            cfg = {"x": round(1.0 / r, 4), "lr": 0.001 * r, "n_layers": 1 + r % 2,
                   "optimizer": "adam"}
            trial = study.finish_trial(study.start_trial(cfg, tool="optuna:tpe"),
                                       status="complete",
                                       metrics={"loss": 0.1 if r == 19 else abs(r - 7) + 0.25})
            log = builder.close(log, builder.row(r, "A (optuna:tpe)", trial), 48)
        return log
    block = builder.round_text(99, [("optuna:tpe", {"x": 0.5, "lr": 0.1, "n_layers": 1,
                                                    "optimizer": "adam"})])
    with EmbeddedServer(say=lambda m: None) as srv:
        llm = json_model(chat_model(srv.base_url, "default"), {}, grammar=label_grammar(["A"]))

        def ask(log: PromptLog) -> dict:
            timed_invoke(llm, [HumanMessage(builder.prompt(log, block))], study=study,
                         protocol="json", trial_number=0)
            return study.timings("llm_call")[-1]
        log = grow(log, range(1, 25))
        ask(log)
        for end in (36, 48):
            short = builder.compact(log, 12)
            assert len(short.rows) == 13 and short.rows[0].startswith(f"Round {end - 29}: ")
            before, after = ask(log), ask(short)  # the best of the rows dropped stays
            assert before["prompt_tokens"] > after["prompt_tokens"] + 400  # 11 rows left
            assert after["cached_tokens"] >= after["prompt_tokens"] - 5, end
            log = grow(short, range(end - 11, end + 1))


@pytest.mark.e2e
def test_calls_on_both_slots_keep_the_log_cached():
    """Critical and speculative calls can run at once, on the server's two slots, each extending
    the same log; the next call reads only what is new since the real log (llama.cpp picks a
    slot by prompt similarity; no host-memory cache)."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    log = "".join(f"Round {i}: A (tpe) {i * 7919 % 1000} {i * 104729 % 997} -> trial {i}: "
                  f"0.{i * 31 % 1000:03d}\n" for i in range(1, 30))
    with EmbeddedServer(say=lambda m: None) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local")

        def ask(prompt: str):
            return client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": prompt}],
                max_tokens=1, temperature=0).usage
        first = ask(log + "## Round 30\nA tpe\nB DE\n")
        real = log + "Round 30: A (tpe) 3 4 -> trial 30: 0.512\n"
        with ThreadPoolExecutor(2) as pool:  # both slots at once: a real and a speculative call
            list(pool.map(ask, [real + "## Round 31\nA tpe\nB DE\n",
                                real + "Round 31: B (DE) 5 6 -> trial 31: 0.7\n## Round 32\n"]))
        nxt = ask(real + "Round 31: B (DE) 5 6 -> trial 31: 0.649\n## Round 32\nA tpe\n")
    assert first.prompt_tokens > 500
    # Whichever slot the server picks (the speculative one shares more, but llama.cpp may take the
    # other when the two finish in the other order), only the rows since `real` are recomputed:
    # the new row, the header and the chat template, about 40 tokens of ~970.
    assert nxt.prompt_tokens - nxt.prompt_tokens_details.cached_tokens <= 60


@pytest.mark.e2e
def test_decisions_asked_ahead_on_smollm2_read_one_row_and_their_block(tmp_path):
    """Under a plan (4 rounds), the next decision is asked in the background on the real
    server, applied when the plan ends, and the rows it did not decide are warmed meanwhile, so
    a decision asked ahead recomputes only the rows since the last warm-up and its block. Each trial's
    landing waits for the background call to end: a fixed order, whatever the machine's speed."""
    import threading

    from fakes import australian, run_graph

    from asap.agent.selftune import Bounds

    def idle(trial, tool):
        pause = threading.Event()
        while ctx.ahead.busy():
            pause.wait(0.01)

    with EmbeddedServer(say=lambda m: None) as srv:
        study, ctx = australian(tmp_path, chat_model(srv.base_url, "default"), trials=10,
                                speculation="threshold", grammar=True, on_trial=idle,
                                bounds=Bounds(plan_min=4, plan_max=4))
        run_graph(ctx, plan=4)
    assert len(study.trials(status="complete")) == 10
    # Round 1 trains the prior's pick while the LLM reads the prompt; its answer decides 2.
    assert [(e["detail"]["asked"], e["detail"]["round"], e["detail"]["verdict"])
            for e in study.events("ahead")] == [(1, 2, "train"), (3, 6, "train"),
                                                (7, 10, "train")]
    calls = study.timings("llm_call")
    ahead = [c for c in calls if c["detail"].get("ahead")]
    warm = [c for c in calls if c["detail"].get("warmup")]
    assert len(ahead) == 3 and len(warm) == 4 and len(calls) == 7  # none on the critical path
    # The one asked at round 7 follows the warm-ups of rounds 4 and 5: all it recomputes is what
    # came after round 5's (rows 5 and 6, round 7's block), not the plan's earlier rows.
    uncached = ahead[2]["prompt_tokens"] - ahead[2]["cached_tokens"]
    after_warm = ahead[2]["prompt_tokens"] - warm[1]["prompt_tokens"]
    assert ahead[2]["prompt_tokens"] > 700 and uncached <= after_warm + 10 and uncached < 260
    assert warm[1]["prompt_tokens"] - warm[1]["cached_tokens"] < 70  # one row (round 4's)


@pytest.mark.e2e
def test_stopping_the_server_with_a_call_in_flight_ends_that_call_and_returns():
    """Issue 37 (9): a session ended by SIGTERM mid-call stops the server while a call waits
    for its answer; the server's destructor waited for that call's handler, which waited for
    its client: the session hung for good. The stop shuts the call's connection first."""
    import json
    import threading
    import time
    import urllib.request

    import openai

    srv = EmbeddedServer(say=lambda m: None)
    srv.reserve().ready(wait=True)
    client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=600)
    asked, outcome = threading.Event(), []

    def call() -> None:
        asked.set()
        try:
            client.chat.completions.create(model="default", max_tokens=4000, messages=[
                {"role": "user", "content": "Write a very long story about dragons."}])
            outcome.append("answered")
        except openai.APIConnectionError:
            outcome.append("cut off")
    threading.Thread(target=call, daemon=True).start()
    asked.wait()

    def processing() -> bool:  # the server is answering the call (llama.cpp's /slots)
        with urllib.request.urlopen(f"{srv.url}/slots") as answer:
            return any(slot["is_processing"] for slot in json.loads(answer.read()))
    while not processing() and not outcome:
        time.sleep(0.05)
    stopper = threading.Thread(target=srv.stop, daemon=True)
    stopper.start()
    stopper.join(300)  # bounds a failure only: the hang was for good
    assert not stopper.is_alive(), "the server's stop hung on the call in flight"
    assert srv.url is None
    deadline = time.monotonic() + 60  # the call ends with the stop: wait for that event
    while not outcome:
        assert time.monotonic() < deadline, "the call in flight never ended"
        time.sleep(0.05)
    assert outcome == ["cut off"]
