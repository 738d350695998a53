"""The chat's questions: answered from the ledger and the study, never turned into actions.

Every node of the chat graph asks :func:`~asap.agent.chat.questions.is_question` first, before any
action rule. The numbers come from the ledger (:mod:`asap.agent.chat.answers`); the LLM only writes
the answer to a question none of these covers, from the ledger's facts. "What should I try
next?" ends with an offer (5 more trials) that, like every request, waits for a yes.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from asap.agent.chat import answers
from asap.agent.chat.intent import parse_intent, parse_request
from asap.agent.chat.plan import match, plan_of
from asap.agent.chat.questions import kind, target_named, tool_named
from asap.agent.llm.client import llm_errors
from asap.graphs.chat_state import ChatContext, ChatState
from asap.tools.hpo.space import SpaceError
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study

NOTHING = "OK, nothing started. Ask me about the study, or say what to change."
OFFER = 5  # trials "what should I try next?" offers to run


def answer(ctx: ChatContext, state: ChatState, text: str) -> ChatState:
    """The answer to a question; with a study, about it. Sets no plan, except the offer."""
    q = kind(text)
    name = state.get("study")
    if q == "help" or name is None:
        prefix = "" if q == "help" or name else "Nothing has been tuned in this conversation " \
                                                "yet. "
        return say(prefix + answers.HELP_TEXT)
    study = Ledger(ctx.db).open_study(name)
    if q == "summary":
        return say(answers.summary(study))
    if q == "why":
        return say(answers.why_picked(study, tool_named(text)))
    if q == "time":
        return say(answers.time_split(study))
    if q == "importance":
        named = []
        for word in parse_request(text).get("params", []):  # "lr" -> learning_rate_init
            try:
                named += match([word], study.space)
            except SpaceError:
                continue
        return say(answers.importance(study, named))
    if q == "next":
        done = len(study.finished_ids())
        plan = plan_of(study)
        offer = {**plan, "trials": done + OFFER, "more": OFFER, "done": done}
        return {"messages": [AIMessage(answers.next_proposals(study, target_named(text))
                                       + f"\nI can run {OFFER} more trials from here.")],
                "plan": offer, "phase": "ready"}
    if q == "top":  # "what were the top 3?": that many
        asked = parse_intent(text)
        return say(answers.top(study, asked.n if asked and asked.n else 5))
    if q == "best":
        return say(answers.best(study))
    return say(phrased(ctx, study, text))


ANSWER_TOKENS = 200  # a phrasing of the facts is a few sentences; a small model may not stop
GROUNDED = ("You answer questions about a tuning session from the facts below, in two or three "
            "sentences. Use only these facts: copy numbers and names exactly as written, compute "
            "nothing new. If the facts do not answer the question, say that the ledger does not "
            "record it.\nFacts from the ledger:\n{facts}")


def phrased(ctx: ChatContext, study: Study, text: str) -> str:
    """The LLM's answer to a question no plain answer covers, phrased from the ledger's facts
    and checked against them: a number or name the facts do not hold (the model supplied it)
    drops the phrasing for the facts themselves, saying so."""
    facts = "\n".join([answers.summary(study), answers.top(study, 3), answers.time_split(study)])
    try:
        # Not streamed: a reply is shown only once it has passed the check.
        reply = str(ctx.llm.bind(max_tokens=ANSWER_TOKENS).with_config(tags=["nostream"]).invoke(
            [SystemMessage(GROUNDED.format(facts=facts)), HumanMessage(text)]).content)
    except llm_errors() as exc:
        return f"(the LLM failed: {type(exc).__name__}) Here is what the ledger says:\n" + facts
    invented = answers.unsupported(reply, facts)
    if invented or answers.rambles(reply):
        why = (f" (a phrasing mentioned {', '.join(invented[:3])}, which it does not hold)"
               if invented else "")
        return ("I can only answer from what the ledger records, and it does not say that "
                f"directly{why}. What it records:\n" + facts)
    return reply


def say(text: str) -> ChatState:
    """A reply of the chat's, as the state update that adds it."""
    return {"messages": [AIMessage(text)]}
