"""The LangGraph graphs that wire the agent and the tools.

- :func:`asap.graphs.tuning.build_tuning_graph`: the tuning loop itself, on a ``Runtime``.
- :func:`asap.graphs.app.build_tune_graph`: one node that runs a whole tuning task; its input and
  output are plain dicts, so another LangGraph app can add it as a node or subgraph.
"""
