"""Test helpers shared by every module's tests and benchmarks (needs the ``dev`` extra).

``curate.testing.openai_server.OpenAIServer``: a real loopback OpenAI-compatible HTTP server with
scripted replies and fault injection (see its module docstring).
"""
