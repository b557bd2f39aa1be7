"""The loopback OpenAI-compatible server (curate.testing.openai_server), over real HTTP."""

from __future__ import annotations

import time

import asyncio
import json
import urllib.request

import openai
import pytest

from curate.testing.openai_server import Fault, OpenAIServer, Reply, first_attempts, token_id, tokenize

MSG = [{"role": "user", "content": "What is 2+2?"}]


def _client(srv, **kw):
    return openai.OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=0, timeout=kw.pop("timeout", 5), **kw)


def test_scripted_n_reasoning_usage_and_models():
    def script(messages, params, index):
        return Reply(content=f"answer {index}", reasoning_content=f"think {index}")

    with OpenAIServer(script=script) as srv:
        c = _client(srv)
        r = c.chat.completions.create(model="t", messages=MSG, n=3, seed=7)
        assert [ch.message.content for ch in r.choices] == ["answer 0", "answer 1", "answer 2"]
        assert r.choices[1].message.model_extra["reasoning_content"] == "think 1"
        assert r.usage.prompt_tokens == len(tokenize(MSG[0]["content"]))
        assert r.usage.completion_tokens == 3 * 4
        # the sample-index header offsets the index seen by the script (fan-out == native n)
        r = c.chat.completions.create(model="t", messages=MSG, extra_headers={"X-Curate-Sample-Index": "5"})
        assert r.choices[0].message.content == "answer 5"
        assert [m.id for m in c.models.list().data] == ["test-model"]
        log = srv.requests()
        assert [x.status for x in log] == [200, 200]
        assert log[0].body["seed"] == 7 and log[0].body["n"] == 3 and log[1].sample_index == 5


def test_max_tokens_truncates_with_length_and_logprobs_as_token_ids():
    with OpenAIServer(script=lambda m, p, i: "one two three four five") as srv:
        c = _client(srv)
        r = c.chat.completions.create(
            model="t", messages=MSG, max_tokens=3, logprobs=True, top_logprobs=2,
            extra_body={"return_tokens_as_token_ids": True},
        )
        ch = r.choices[0]
        assert ch.finish_reason == "length" and ch.message.content == "one two three"
        toks = ch.logprobs.content
        assert [t.token for t in toks] == [f"token_id:{token_id(w)}" for w in ["one", " two", " three"]]
        assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in toks)
        assert all(t.top_logprobs[0].logprob > t.top_logprobs[1].logprob for t in toks)
        r = c.chat.completions.create(model="t", messages=MSG, logprobs=True, top_logprobs=1)
        assert [t.token for t in r.choices[0].logprobs.content] == tokenize("one two three four five")


def test_faults_by_schedule():
    faults = {0: Fault.rate_limit(retry_after=2), 1: Fault.error(503), 2: Fault.malformed(), 3: Fault.disconnect()}
    with OpenAIServer(faults=faults) as srv:
        c = _client(srv)
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="t", messages=MSG)
        assert e.value.response.headers["retry-after"] == "2"
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="t", messages=MSG)
        with pytest.raises(Exception):  # truncated JSON body
            c.chat.completions.create(model="t", messages=MSG)
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="t", messages=MSG)
        assert c.chat.completions.create(model="t", messages=MSG).choices[0].finish_reason == "stop"
        # the server flags a request completed after its last byte is written, which can trail the
        # client's read by a moment on a loaded machine
        deadline = time.monotonic() + 5
        while not srv.requests()[-1].completed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(r.status, r.fault, r.completed) for r in srv.requests()] == [
            (429, "rate_limit", False), (503, "error", False), (200, "malformed", False),
            (0, "disconnect", False), (200, None, True),
        ]


def test_delay_past_timeout_and_first_attempts_and_script_fault():
    with OpenAIServer(faults=first_attempts(Fault.delay(1.0))) as srv:
        c = _client(srv, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="t", messages=MSG)
        assert c.chat.completions.create(model="t", messages=MSG).choices[0].message.content
    with OpenAIServer(script=lambda m, p, i: Fault.error(500) if i == 1 else "ok") as srv:
        c = _client(srv)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="t", messages=MSG, n=2)


def test_concurrency_and_latency_async():
    async def go(url):
        c = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0)
        await asyncio.gather(*[c.chat.completions.create(model="t", messages=MSG) for _ in range(40)])
        await c.close()

    with OpenAIServer(latency=0.2) as srv:
        t0 = asyncio.get_event_loop_policy().new_event_loop()
        import time

        s = time.perf_counter()
        t0.run_until_complete(go(srv.base_url))
        t0.close()
        took = time.perf_counter() - s
        assert srv.max_in_flight >= 20, srv.stats()
        assert 0.2 <= took < 2.0
        with urllib.request.urlopen(srv.base_url.replace("/v1", "/_stats")) as f:
            assert json.load(f)["ok"] == 40


def test_bad_bodies_are_400():
    with OpenAIServer() as srv:
        req = urllib.request.Request(srv.base_url + "/chat/completions", data=b"{nope", method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 400
