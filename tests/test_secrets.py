"""Keys put in the wrong place (issue 14, item 5): detected by shape anywhere in the public recipe tree
and in error messages, a key-shaped ``api_key_env`` is refused, a rejected secret-looking value is never
echoed, ``extra_body`` auth is masked, and nothing key-shaped reaches the manifest, the card or the work
folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.sampling import SampleConfig, plan_requests
from curate.testing.openai_server import OpenAIServer

KEY = "sk-proj-Abc123DEF456ghi789JKL012mno345PQR678"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"problem": f"{i} + {i}"}) + "\n" for i in range(3)))
    return tmp_path


def recipe(teacher: str, extra: str = "", top: str = "") -> str:
    return (f"name: t\nversion: 0.1.0\n{top}sources:\n  - {{kind: file, path: data.jsonl}}\n"
            f"stages:\n  - type: sample\n    teacher: {teacher}\n{extra}")


def cli(*args):
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout + r.stderr


def everything_written(root) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.suffix != ".parquet")


@pytest.mark.parametrize("base_url", [True, False])
def test_a_key_in_api_key_env_is_refused_and_not_echoed(proj, base_url):
    with OpenAIServer() as srv:
        url = f", base_url: '{srv.base_url}'" if base_url else ""
        (proj / "recipe.yaml").write_text(recipe(f"{{backend: openai, model: m, api_key_env: {KEY}{url}}}"))
        for cmd in ("validate", "run"):
            code, out = cli(cmd, "recipe.yaml")
            assert code == 2 and "api_key_env" in out and "NAME of an environment variable" in out, out
            assert KEY not in out and KEY[:12] not in out
        assert srv.count() == 0
    assert KEY not in everything_written(proj / "home") if (proj / "home").exists() else True
    assert not (proj / "out").exists()


def test_a_key_set_on_the_command_line_is_refused_and_not_echoed(proj):
    with OpenAIServer() as srv:
        (proj / "recipe.yaml").write_text(recipe(f"{{backend: openai, model: m, base_url: '{srv.base_url}'}}"))
        for item in (f"stages.0.teacher.api_key_env={KEY}", f"stages.0.n={KEY}", f"stages.0.temperature={HF}",
                     f"{KEY}", f"name.{KEY}=1"):
            for cmd in ("validate", "run"):
                code, out = cli(cmd, "recipe.yaml", "--set", item)
                assert code == 2, (item, out)
                assert KEY not in out and HF not in out and KEY[8:20] not in out, (item, out)
        assert srv.count() == 0


def test_key_shaped_values_anywhere_are_masked_in_manifest_card_and_work_folder(proj, monkeypatch):
    monkeypatch.setenv("ROUTER_TOKEN", "tok-plain-value-12345")
    with OpenAIServer() as srv:
        teacher = f"{{backend: openai, model: m, base_url: '{srv.base_url}'}}"
        extra = (f"    extra_body: {{auth: literal-password-1234, headers: {{X-Api-Key: '{HF}'}}, "
                 f"route: '${{ROUTER_TOKEN}}', note: 'key {KEY} pasted'}}\n")
        (proj / "recipe.yaml").write_text(recipe(teacher, extra, top=f"description: 'contact me, my key is {KEY}'\n"))
        code, out = cli("run", "recipe.yaml")
        assert code == 0, out
        sent = srv.requests()[0].body
        assert sent["auth"] == "literal-password-1234" and sent["note"] == f"key {KEY} pasted"  # the request has them
    written = everything_written(proj / "out") + everything_written(proj / "home")
    for secret in (KEY, HF, "literal-password-1234", "tok-plain-value-12345"):
        assert secret not in written, secret
    manifest = json.loads((proj / "out" / "t" / "0.1.0" / "manifest.json").read_text())
    body = manifest["recipe"]["stages"][0]["extra_body"]
    assert body["route"] == "${ROUTER_TOKEN}" and body["auth"] != "literal-password-1234"
    assert "***" in manifest["recipe"]["description"]


def test_shapes_masked_and_ordinary_values_kept():
    from curate.yamlio import looks_like_secret, mask_secrets

    for s in (KEY, HF, "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA", "ghp_0123456789abcdefghijABCDEFGHIJ",
              "AKIAIOSFODNN7EXAMPLE", "Bearer abcdefghijklmnop123", "gsk_abcdefghijklmnopqrstuvwx12",
              "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
              "Xq7Lm2Np9Rt4Vw8Yz3Bc6Df1Gh5Jk0Ps"):
        assert looks_like_secret(s), s
        assert s not in mask_secrets(f"error: got {s} here")
    for s in ("OPENAI_API_KEY", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "Qwen/Qwen2.5-Math-7B-Instruct",
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "0123456789abcdef" * 3,
              "https://api.deepseek.com/v1", "What is 2 + 2? Please reason step by step.",
              "main", "a6f1c2d3e4b5a6f1c2d3e4b5a6f1c2d3e4b5a6f1", "sk-short"):
        assert not looks_like_secret(s), s


def test_a_rotated_key_in_extra_body_does_not_change_the_request_hash():
    def keys(auth):
        cfg = SampleConfig(teacher={"backend": "openai", "model": "m"}, extra_body={"auth": auth, "top_k": 5})
        return [r.key for r in plan_requests([[{"role": "user", "content": "q"}]], cfg, 0)]

    assert keys("old-password-1") == keys("new-password-2")
    other = SampleConfig(teacher={"backend": "openai", "model": "m"}, extra_body={"auth": "x", "top_k": 6})
    assert keys("x") != [r.key for r in plan_requests([[{"role": "user", "content": "q"}]], other, 0)]
