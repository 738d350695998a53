"""Answers to questions about a study, computed from the ledger (the chat's source of truth).

The chat never lets the LLM invent numbers: these functions read the ledger and return text; the
LLM only decides which one a question asks for.
"""

from __future__ import annotations

import re

from asap.agent.report.stats import cores_line, pct, summarize, tool_records
from asap.tools.hpo.panel import name_pattern
from asap.tools.hpo.params import CategoricalParam
from asap.tools.ledger.study import Study


def top(study: Study, n: int = 5) -> str:
    """The best ``n`` complete trials."""
    done = [t for t in study.trials(status="complete") if t.value is not None]
    done.sort(key=lambda t: t.value, reverse=study.direction == "maximize")
    if not done:
        return f"No trial of {study.name} has completed yet."
    rows = [f"{i + 1}. trial {t.number} ({t.tool}): {study.metric}={t.value:.4g}  "
            f"{study.space.format(t.evaluated)}" for i, t in enumerate(done[:n])]
    return f"Top {min(n, len(done))} of {len(done)} complete trials:\n" + "\n".join(rows)


def why(study: Study, tool: str | None = None) -> str:
    """Why a tool was chosen: its record (trials, improvements of the best) and the decisions
    the agent made with it; the fallbacks say when the LLM did not decide."""
    records = tool_records(study)
    if not records:
        return "No trial has finished yet, so no tool has a record."
    names = [k for k in records if tool is None or tool.lower() in k.lower()] or list(records)
    lines = [f"{k}: {r.trials} trials, {r.improvements} improved the best" for k, r in
             sorted(records.items(), key=lambda kv: -kv[1].improvements) if k in names]
    fallbacks = [e["detail"] for e in study.events("fallback")]
    note = (f" The fallback policy (best improvement record) decided {len(fallbacks)} rounds when "
            "the LLM's answer was unusable." if fallbacks else "")
    return ("Each round the tools proposed and the LLM picked one, seeing every tool's record "
            "(trials proposed, how many improved the best):\n" + "\n".join(lines) + note)


def time_split(study: Study) -> str:
    """Where the wall-clock went."""
    s = summarize(study)
    t, wall = s["time"], s["time"]["wall_s"] or 1e-9
    return (f"Wall-clock {t['wall_s']:.1f} s: training {t['train_s']:.1f} s "
            f"({t['train_s'] / wall:.0%}), LLM with no trial running {t['exposed_llm_s']:.1f} s "
            f"({t['exposed_llm_s'] / wall:.0%}), tools {t['tools_s']:.1f} s, other "
            f"{t['other_s']:.1f} s. LLM time overlapping training {t['hidden_llm_s']:.1f} s "
            f"(speculative calls {t['speculative_llm_s']:.1f} s). "
            f"{s['llm_calls']} LLM calls, {pct(s['cached_share'])} of prompt tokens from the cache."
            + ("" if (idle := cores_line(s["cores"], "workers=")) is None else
               f" And {idle}."))


def best(study: Study) -> str:
    s = summarize(study)
    if s["best_value"] is None:
        return f"{study.name}: {s['trials']} trials, none complete yet."
    return (f"{study.name}: best {study.metric} {s['best_value']:.4g} (trial {s['best_trial']}, "
            f"{s['best_tool']}) after {s['trials']} trial{'' if s['trials'] == 1 else 's'}; config "
            f"{study.space.format(s['best_config'])}")


_BY = {"llm": "the LLM", "prior": "the prior (no LLM call)", "plan": "a plan (one LLM "
       "decision covering several rounds)", "fallback": "the fallback (the LLM's answer was "
       "unusable)"}


def decision_for(study: Study, tool: str | None) -> str:
    """The last round that trained ``tool``'s proposal: who decided, and what the prior said of
    it then (its predicted value, uncertainty, expected improvement and training time)."""
    every = [e["detail"] for e in study.events("decision")]
    rounds = [d for d in every if tool is None or tool.lower() in d["trained"][0].lower()]
    if not rounds:
        if not every:
            return ""
        return (f"No round trained {tool}'s proposal in {study.name}. "
                + decision_for(study, None))
    d = rounds[-1]
    trained, label = d["trained"], d["choice"].split()[0]
    line = (f"Round {d['round']} trained {trained[0]}'s proposal ({label}, trial {d['trial']}), "
            f"decided by {_BY.get(d['by'], d['by'])}")
    offers = [tuple(o) for o in d.get("offers", [])]
    scores = d.get("scores") or []
    i = next((k for k, o in enumerate(offers) if o[0] == trained[0] and o[1] == trained[1]),
             None)
    if i is not None and i < len(scores) and scores[i]:
        mean, sd, ei, seconds = (scores[i] + [None])[:4]
        line += (f"; the prior ranked it {i + 1} of {len(offers)}, predicting "
                 f"{study.metric} {mean:.4g} ±{sd:.2g} (expected improvement {ei:.3g}"
                 + (f", ~{seconds:.3g} s to train" if seconds else "") + ")")
    elif d["by"] in ("prior", "plan") and d["round"] <= 3:
        line += "; a start-up round: the prior had too few trials to score, so the proposal " \
                "nearest the centre of the space trained"
    return line + "."


def why_picked(study: Study, tool: str | None = None) -> str:
    """Why ``tool`` (or the last tool) trained: the round that picked it, then every record."""
    return "\n".join(x for x in (decision_for(study, tool), why(study, tool)) if x)


def importance(study: Study, names: list[str] | None = None) -> str:
    """Which parameters matter: Optuna's fANOVA on the study's complete trials (the numbers
    optuna-dashboard shows); ``names`` (two named in the question) are compared."""
    from asap.tools.ledger.optuna_mirror import importances

    try:
        scores = importances(study)[1]
    except ValueError as exc:
        return f"{str(exc)[0].upper()}{str(exc)[1:]}."
    ranked = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
    n = len(study.trials(status="complete"))
    text = f"fANOVA importance over {n} complete trials (share of the variance): {ranked}."
    named = [k for k in scores if k in (names or [])]
    if len(named) == 2:
        a, b = sorted(named, key=lambda k: -scores[k])
        text = f"{a} matters more than {b} here ({scores[a]:.2f} against {scores[b]:.2f}). " \
               + text
    return text + (" With few trials these numbers move a lot." if n < 10 else "")


def next_proposals(study: Study, target: float | None = None, show: int = 3) -> str:
    """What to try next: the tools' next proposals, ranked by the prior as a round would rank
    them, each with its prediction (nothing is trained)."""
    from asap.agent.prior.ranking import rank
    from asap.tools.hpo.portfolio import Portfolio

    if len(study.trials(status="complete")) < 3:
        return "The prior needs 3 complete trials to rank proposals; a few more trials first."
    offers = Portfolio(study, seed=len(study.trials())).panel_offers()
    ranked, scores = rank(study, offers)
    lines = []
    for (tool, config), sc in list(zip(ranked, scores, strict=True))[:show]:
        pred = "" if sc is None else f": predicted {sc.mean:.4g} ±{sc.sd:.2g}"
        lines.append(f"- {tool}{pred}  {study.space.format(config)}")
    text = "The tools' next proposals, as the prior ranks them:\n" + "\n".join(lines)
    if target is not None and scores and scores[0] is not None:
        reach = [sc for sc in scores if sc is not None and (
            sc.mean > target if study.direction == "maximize" else sc.mean < target)]
        text += (f"\n{len(reach)} of them {'is' if len(reach) == 1 else 'are'} predicted past "
                 f"{target:g}." if reach else f"\nNone is predicted past {target:g} yet; more "
                 "trials narrow the prior's uncertainty.")
    return text


def summary(study: Study) -> str:
    """What the session did, in plain words: what was tuned, how many trials ran and how they
    ended, who proposed and who decided, the best and what it used."""
    s = summarize(study)
    free = [p.name for p in study.space.params
            if not (isinstance(p, CategoricalParam) and len(p.choices) == 1)]
    ended = ", ".join(f"{s[k]} {k}" for k in ("complete", "pruned", "failed") if s[k])
    tools = ", ".join(f"{k} {r['trials']}" for k, r in s["per_tool"].items())
    by: dict[str, int] = {}
    for e in study.events("decision"):
        by[e["detail"]["by"]] = by.get(e["detail"]["by"], 0) + 1
    decided = ", ".join(f"{_BY.get(k, k)} {n}" for k, n in sorted(by.items(), key=lambda kv: -kv[1]))
    text = (f"I tuned {', '.join(free)} of {study.workload} to {study.direction} {study.metric}: "
            f"{s['trials']} trials ({ended or 'none finished'}) in {s['time']['wall_s']:.1f} s. "
            "Each round the tools proposed configurations and one was trained; trials by tool: "
            f"{tools or 'none'}.")
    if decided:
        text += f" Rounds decided by: {decided}."
    if s["best_value"] is not None:
        text += (f" The best {study.metric}, {s['best_value']:.4g}, came from trial "
                 f"{s['best_trial']} ({s['best_tool']}): {study.space.format(s['best_config'])}.")
    return text


_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?%?")
# A tool's name, other methods' names, or a parameter-like snake_case word.
_NAMES = re.compile(rf"\b({name_pattern('smac', 'hyperband', 'bohb')}|[a-z]+_[a-z_]+)\b")


def unsupported(reply: str, facts: str) -> list[str]:
    """The numbers and names in ``reply`` (an LLM's phrasing of ``facts``) that ``facts`` does
    not hold: a number matches one of the facts' at the precision it is written (a percentage
    also as a share), a tool or parameter name must appear in them. Empty: the reply is
    grounded."""
    found = _NUM.findall(facts)
    plain = [float(m) for m in found if not m.endswith("%")]
    percents = [float(m[:-1]) for m in found if m.endswith("%")]
    words = facts.lower()
    out = []
    for token in _NUM.findall(reply):
        x = float(token.rstrip("%"))
        digits = len(token.rstrip("%").partition(".")[2].partition("e")[0])
        tol = abs(x) * 1e-3 if "e" in token else 0.5 * 10 ** -digits + 1e-12
        pool = ([*percents, *(k * 100 for k in plain)] if token.endswith("%")
                else [*plain, *(k / 100 for k in percents)])
        if not any(abs(x - k) <= tol for k in pool):
            out.append(token)
    out += [w for w in _NAMES.findall(reply.lower()) if w.replace("-", "") not in
            words.replace("-", "")]
    return out


def rambles(reply: str) -> bool:
    """Whether ``reply`` repeats itself (a sentence three times or more: a small model caught
    in a loop until its token limit) or says nothing."""
    sentences = [s.strip().lower() for s in re.split(r"[.!?\n]+", reply) if len(s.strip()) > 8]
    return not reply.strip() or any(sentences.count(s) >= 3 for s in set(sentences))


HELP_TEXT = """I can tune and answer questions about what was tuned:
- "tune the learning rate and width of train.py:fit for accuracy, 20 trials": I show the plan and
  wait for your yes before anything runs.
- After a session: "top 5", "why tpe?", "where did the time go?", "which parameter matters?",
  "what should I try next?"; "5 more trials", "narrow width to 32..64", "try adam" (each shown as
  a plan that needs a yes); "stop".
- "exit" leaves; `asap chat --thread ID` comes back to this conversation."""
