"""The chat's understanding: what a message asks for (a request or a question), answers from the
ledger, and the plan a person confirms before a session.
"""
