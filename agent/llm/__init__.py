"""The LLM: the client on any OpenAI-compatible endpoint, the embedded llama.cpp server and its
model, the decision protocols and their schema, the call deadline and the circuit breaker.
"""
