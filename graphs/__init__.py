"""The LangGraph graphs that wire the agent and the tools, and the session that runs them.

- :data:`asap.graphs.tuning.graph`: the tuning loop itself, compiled once; a run brings its
  :class:`~asap.graphs.context.TuneContext` as LangGraph's runtime context.
- :func:`asap.graphs.session.tune` and :func:`asap.graphs.api.run_task`: a whole session.
- :func:`asap.graphs.app.build_tune_graph`: one node that runs a whole tuning task; its input and
  output are plain dicts, so another LangGraph app can add it as a node or subgraph.
- :func:`asap.graphs.chat.build_chat_graph`: the chat.
"""
