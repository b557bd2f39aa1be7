"""Teacher backends for :mod:`curate.sampling` (imported lazily by ``curate.sampling.make_backend``).

* ``openai_compat``: any OpenAI-compatible endpoint (one aiohttp session; retries, rate limits)
* ``vllm_offline``: in-process ``vllm.LLM`` (extra ``[vllm]``, GPU)
* ``transformers_local``: a local Hugging Face model with ``generate`` (extra ``[train]``)

Each exposes a class with ``teacher``, ``tokenizer`` and ``run(requests, sink)``: see
``curate.sampling.Backend``.
"""
