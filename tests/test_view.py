"""``curate view`` over HTTP: a real uvicorn server on loopback, the quickstart version built by
``curate run``, answers checked against the parquet files read with polars."""

from __future__ import annotations

import glob
import html
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("duckdb", reason="needs the view extra: pip install 'curate[view]'")
pytest.importorskip("starlette", reason="needs the view extra: pip install 'curate[view]'")
pytest.importorskip("uvicorn", reason="needs the view extra: pip install 'curate[view]'")

from curate.sampling import RequestLog
from curate.view.app import Server, highlight
from curate.view.data import Query, Store

ROOT = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).with_name("curate"))
PAYLOAD = ("<script>document.title='PWNED';window.__pwned=1</script>"
           "</pre></details><img src=x onerror=\"window.__pwned=2\">")


def build_quickstart(out: Path) -> Path:
    """``curate run recipes/quickstart.yaml --output out`` (its own CURATE_HOME): the version folder."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CURATE_HOME": str(out / "home")}
    subprocess.run([CURATE, "run", str(ROOT / "recipes" / "quickstart.yaml"), "--output", str(out)],
                   check=True, env=env, cwd=out, capture_output=True, text=True, timeout=240)
    return out / "quickstart" / "0.1.0"


def get(url: str, expect: int = 200) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == expect, (url, r.status)
            return r.read().decode()
    except urllib.error.HTTPError as e:
        assert e.code == expect, (url, e.code, e.read()[:300])
        return e.read().decode()


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def trace_links(page: str) -> list[str]:
    return re.findall(r'href="(/trace/[a-z]+/\d+/\d+)"', page)


def total_of(page: str) -> int:
    m = re.search(r'<b id="total">([\d,]+)</b>', page)
    assert m, page[:2000]
    return int(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_quickstart(tmp_path_factory.mktemp("quickstart"))


@pytest.fixture(scope="module")
def frames(version: Path) -> dict[str, pl.DataFrame]:
    return {s: pl.read_parquet(sorted(glob.glob(str(version / "data" / f"{s}-*.parquet"))))
            for s in ("train", "rejected")}


@pytest.fixture(scope="module")
def server(version: Path, tmp_path_factory: pytest.TempPathFactory):
    store = Store(version, index_dir=tmp_path_factory.mktemp("index"))
    assert store.wait_index(60, search=True)
    with Server(store) as base:
        yield base, store
    store.close()


def test_table_filters_sorts_and_pages_match_the_data(server, frames) -> None:
    base, _ = server
    train, rejected = frames["train"], frames["rejected"]
    page = get(f"{base}/")
    assert total_of(page) == train.height
    assert len(trace_links(page)) == min(50, train.height)
    # pagination: every row exactly once over the pages
    seen = []
    for p in range(3):
        seen += trace_links(get(f"{base}/?per=25&page={p}"))
    assert sorted(seen) == sorted(f"/trace/train/0/{i}" for i in range(train.height))
    # a flag filter
    n_flag = train.filter(pl.col("flags").list.contains("no_boxed")).height
    assert n_flag >= 1
    assert total_of(get(f"{base}/?flag=no_boxed")) == n_flag
    # drop reason and dropped_by in the rejected split, and several verdicts at once
    for key, col, val in (("drop_reason", "drop_reason", "near_duplicate"), ("dropped_by", "dropped_by", "difficulty")):
        want = rejected.filter(pl.col(col) == val).height
        assert want > 0
        assert total_of(get(f"{base}/?split=rejected&{key}={val}")) == want
    want = rejected.filter(pl.col("verdict").is_in(["incorrect", "no_answer"])).height
    assert total_of(get(f"{base}/?split=rejected&verdict=incorrect&verdict=no_answer")) == want
    # difficulty bucket, curriculum stage, source, teacher, correct
    assert total_of(get(f"{base}/?bucket=hard")) == train.filter(pl.col("difficulty_bucket") == "hard").height
    assert total_of(get(f"{base}/?stage=1")) == train.filter(pl.col("curriculum_stage") == 1).height
    assert total_of(get(f"{base}/?split=rejected&correct=0")) == rejected.filter(~pl.col("correct")).height
    assert total_of(get(f"{base}/?source=quickstart&teacher=example-teacher")) == train.height
    assert total_of(get(f"{base}/?teacher=nobody")) == 0
    # length range (characters of reasoning)
    lens = train["reasoning"].str.len_chars()
    assert total_of(get(f"{base}/?len_min=80&len_max=90")) == int(((lens >= 80) & (lens < 90)).sum())
    # sorted by pass rate, descending: the page's first rows have the highest pass rate
    page = get(f"{base}/?split=rejected&sort=pass_rate&desc=1&per=25")
    first = trace_links(page)[0]
    best = rejected.with_row_index("i").filter(pl.col("pass_rate").is_not_null()).sort(
        ["pass_rate", "i"], descending=[True, False])["i"][0]
    assert first == f"/trace/rejected/0/{best}"
    # sort by reasoning length ascending: rows come in that order
    order = [int(h.rsplit("/", 1)[1]) for h in trace_links(get(f"{base}/?sort=reasoning_chars&per=200"))]
    assert [lens[i] for i in order] == sorted(lens.to_list())


def test_rejected_split_gets_recomputed_flags(server, frames) -> None:
    """The audit stage runs after the drops, so the rejected split has no flags column: the view
    computes them with curate.audit.flags (the version's config, the train split's length reference)."""
    from curate.audit.flags import audit_frame
    from curate.view.measures import audit_config

    base, store = server
    rej = frames["rejected"]
    assert "flags" not in rej.columns
    want = audit_frame(rej, audit_config(store.manifest), length_ref=store.length_ref())["flags"]
    counts: dict[str, int] = {}
    for fl in want.to_list():
        for f in fl:
            counts[f] = counts.get(f, 0) + 1
    assert counts, "the quickstart's rejected rows should carry some flags (planted faults)"
    for f, n in counts.items():
        assert total_of(get(f"{base}/?split=rejected&flag={f}")) == n, f
    assert 'id="flags-recomputed"' in get(f"{base}/fragment/panel?split=rejected")
    assert 'id="flags-recomputed"' not in get(f"{base}/fragment/panel?split=train")


def test_search_over_problem_reasoning_and_answer(server, frames) -> None:
    base, store = server
    train = frames["train"]
    def want(q: str) -> int:
        return train.filter(pl.col("problem").str.contains(f"(?i){q}") | pl.col("reasoning").str.contains(f"(?i){q}")
                            | pl.col("answer_text").str.contains(f"(?i){q}")).height

    for q in ("muffins", "Vertex at", "minimum value"):
        assert want(q) > 0
        page = get(f"{base}/?q={urllib.parse.quote(q)}")
        assert "word search (index)" in page
        assert total_of(page) == want(q), q
    # with a filter and a sort (matches joined with the index), a prefix, a second page
    n = want("muffins")
    hard = train.filter((pl.col("difficulty_bucket") == "easy") & pl.col("problem").str.contains("(?i)muffins")).height
    assert total_of(get(f"{base}/?q=muffins&bucket=easy&sort=pass_rate&desc=1")) == hard
    assert total_of(get(f"{base}/?q=muffin*")) == n and total_of(get(f"{base}/?q=muffin")) == want(r"\bmuffin\b")
    pages = [trace_links(get(f"{base}/?q=the&per=25&page={k}")) for k in range(4)]
    assert sum(map(len, pages)) == want(r"\bthe\b") and len({x for p in pages for x in p}) == want(r"\bthe\b")
    # without the search index: a substring scan of the shards gives the same rows
    plain = Store(store.path, build_index=False)
    try:
        got = plain.page(Query("train", q="Vertex at", per=200))
        assert got["search_mode"] == "scan" and len(got["rows"]) == want("Vertex at")
        with Server(plain) as base2:  # the page says the search scanned, and shows no count it does not have
            page = get(f"{base2}/?q=muffins&per=200")
            assert "substring scan" in page and 'id="total"' not in page
            assert len(trace_links(page)) == want("muffins")
    finally:
        plain.close()
    # text that is not a word, or SQL/FTS syntax, is just text
    for q in ('"', "%", "a' OR 1=1 --", "NEAR(", "*"):
        assert get(f"{base}/?q={urllib.parse.quote(q)}").count("/trace/") == 0


def test_trace_page_shows_answer_flags_difficulty_lineage(server, frames) -> None:
    base, _ = server
    train = frames["train"]
    i = train.with_row_index("i").filter(pl.col("flags").list.contains("no_boxed"))["i"][0]
    row = train.row(i, named=True)
    page = get(f"{base}/trace/train/0/{i}")
    m = re.search(r'<pre class="text" id="answer">(.*?)</pre>', page, re.DOTALL)
    assert m and f'<mark id="pred" title="extracted prediction">{row["pred_answer"]}</mark>' in m.group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", m.group(1))) == row["answer_text"]
    assert f'<code id="gold">{row["gold_answer"]}</code>' in page
    # each stored flag with its measure (recomputed by curate.audit.flags)
    measures = re.findall(r'<tr class="(hit)?" data-flag="([a-z_]+)">.*?<td>(yes|no|-)</td><td>(yes|no)</td>'
                          r'<td class="measure">(.*?)</td>', page, re.DOTALL)
    table = {f: (stored, now, meas) for _, f, stored, now, meas in measures}
    for f in row["flags"]:
        assert table[f][0] == "yes" and table[f][1] == "yes", (f, table[f])
    assert "reasoning chars=" in table["empty_reasoning"][2] and "robust z=" in table["length_outlier"][2]
    # difficulty and the problem's other samples, one click away
    same = {s: frames[s].filter(pl.col("problem_id") == row["problem_id"]).height for s in ("train", "rejected")}
    for s, n in same.items():
        if n:
            assert f"{n} in {s}</a>" in page
            link = html.unescape(re.search(rf'href="([^"]+)" class="samples-link" data-split="{s}"', page).group(1))
            assert total_of(get(base + link)) == n
    assert "pass_rate" in page and "difficulty_bucket" in page
    # lineage: source file and index, teacher
    assert f'{row["source_index"]}</td>' in page and "example-teacher" in page and "train-00000-of-00001.parquet row" in page


def test_rejected_trace_shows_drop_and_duplicate_cluster(server, frames) -> None:
    base, _ = server
    rej = frames["rejected"].with_row_index("i")
    near = rej.filter(pl.col("drop_reason") == "near_duplicate")
    i = near["i"][0]
    page = get(f"{base}/trace/rejected/0/{i}")
    assert 'id="drop-reason"' in page and ">near_duplicate</a>" in page and ">dedup</a>" in page
    # the cluster side by side: the dropped problem and the kept one it duplicates
    dup = re.search(r'<section id="dups-sec">(.*?)</section>', page, re.DOTALL)
    assert dup, "no near-duplicate section"
    kept = near["duplicate_of"][0]
    texts = text_of(dup.group(1))
    assert near["problem"][0] in texts
    everything = pl.concat([frames["train"], frames["rejected"]], how="diagonal_relaxed")
    kept_problem = everything.filter(pl.col("cluster_id") == near["cluster_id"][0]).filter(
        pl.col("problem_id") != near["problem_id"][0])["problem"][0]
    assert kept_problem in texts and kept in page
    # the drop reason link leads to the rejected rows with that reason
    link = html.unescape(re.search(r'id="drop-reason" href="([^"]+)"', page).group(1))
    assert total_of(get(base + link)) == near.height


def test_long_reasoning_is_paginated(tmp_path: Path) -> None:
    long = "".join(f"step {i}: {'x' * 90}\n" for i in range(600))  # ~60k chars -> 3+ parts
    pl.DataFrame({"problem": ["p"], "reasoning": [long], "answer_text": ["\\boxed{7}"], "pred_answer": ["7"],
                  "verdict": ["correct"], "correct": [True]}).write_parquet(tmp_path / "one.parquet")
    store = Store(tmp_path / "one.parquet", index_dir=tmp_path / "idx")
    try:
        store.wait_index(30, search=True)
        with Server(store) as base:
            p0 = get(f"{base}/trace/train/0/0")
            assert "part 1 of 4" in p0 and 'id="rnext"' in p0
            parts = [text_of(re.search(r'<pre class="text trace" id="reasoning">(.*?)</pre>',
                                       get(f"{base}/trace/train/0/0?rpage={k}"), re.DOTALL).group(1)) for k in range(4)]
            assert "".join(parts) == long
            get(f"{base}/trace/train/0/0?rpage=4", expect=400)
            get(f"{base}/trace/train/0/0?rpage=-1", expect=400)
    finally:
        store.close()


def test_untrusted_text_is_escaped_everywhere(tmp_path: Path, version: Path) -> None:
    df = pl.read_parquet(sorted(glob.glob(str(version / "data" / "train-*.parquet"))))
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(PAYLOAD) + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in ("problem", "reasoning", "answer_text", "pred_answer", "source", "teacher", "verdict", "difficulty_bucket")
    ).with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit([PAYLOAD])).otherwise(pl.col("flags")).alias("flags"))
    df.write_parquet(tmp_path / "evil.parquet")
    store = Store(tmp_path / "evil.parquet", index_dir=tmp_path / "idx")
    try:
        store.wait_index(30, search=True)
        with Server(store) as base:
            pages = [get(f"{base}/"), get(f"{base}/fragment/panel?split=train"), get(f"{base}/trace/train/0/0"),
                     get(f"{base}/?flag={urllib.parse.quote(PAYLOAD)}"), get(f"{base}/?q={urllib.parse.quote(PAYLOAD[:20])}")]
            for page in pages:
                assert "<script>document" not in page and "<img src=x" not in page
                assert "onerror=\"window" not in page
                assert page.count("<script") == page.count('<script src="/static/view.js" defer></script>')
            assert "&lt;script&gt;document.title=" in pages[2] and "&lt;script&gt;" in pages[1]
            with urllib.request.urlopen(f"{base}/trace/train/0/0") as r:
                csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    finally:
        store.close()


def _raw_get(base: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.putrequest("GET", path, skip_host=host is not None, skip_accept_encoding=True)
    if host is not None:
        c.putheader("Host", host)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_path_traversal_and_foreign_hosts_are_refused(server, version: Path) -> None:
    base, _ = server
    secret = (ROOT / "curate" / "view" / "app.py").read_text()[:200].encode()
    manifest = (version / "manifest.json").read_bytes()[:100]
    for path in ("/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/%2e%2e%2fapp.py",
                 "/static/....//app.py", "/static/..\\app.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
                 "/trace/..%2f..%2fmanifest.json/0/0", "/trace/train/0/..%2f..", "/trace/train/-1/0",
                 "/trace/train/7/0", "/trace/train/0/999999", "/../manifest.json", "/%2e%2e/manifest.json",
                 "/static/../../../../etc/passwd", "/trace/../../etc/passwd/0/0"):
        status, body = _raw_get(base, path)
        assert status in (400, 404), (path, status)
        assert secret not in body and manifest not in body and b"root:x:0" not in body, path
    assert _raw_get(base, "/static/view.js")[0] == 200
    assert _raw_get(base, "/?split=../../etc")[0] == 404
    # DNS rebinding: a request naming another host is refused
    assert _raw_get(base, "/", host="evil.example")[0] == 400
    assert _raw_get(base, "/", host="localhost")[0] == 200


def test_bad_parameters_are_400(server) -> None:
    base, _ = server
    for q in ("sort=problem;drop", "page=x", "per=7", "len_min=-3", "correct=2", "sort=reasoning"):
        get(f"{base}/?{q}", expect=400)


def test_raw_logged_response_from_the_stage_log(tmp_path: Path, version: Path) -> None:
    df = pl.read_parquet(sorted(glob.glob(str(version / "data" / "train-*.parquet")))).head(3)
    df = df.with_columns(pl.Series("request_hash", ["aa11", "bb22", "cc33"]))
    df.write_parquet(tmp_path / "t.parquet")
    log = RequestLog(tmp_path / "work" / "sampling" / "sample.sqlite")  # what the sample stage writes
    log.put("bb22", {"samples": [{"content": "<think>raw teacher words</think> \\boxed{5}", "finish_reason": "stop"}],
                     "prompt_tokens": 12})
    log.close()
    store = Store(tmp_path / "t.parquet", work_dir=tmp_path / "work", index_dir=tmp_path / "idx")
    try:
        with Server(store) as base:
            page = get(f"{base}/trace/train/0/1")
            assert 'id="raw"' in page and "&lt;think&gt;raw teacher words&lt;/think&gt;" in page
            assert "bb22" in page and "sample.sqlite" in page
            other = get(f"{base}/trace/train/0/0")
            assert 'id="raw"' not in other and "no logged response for this request hash" in other
    finally:
        store.close()


def test_jsonl_input(tmp_path: Path) -> None:
    rows = [{"problem": f"what is {i}?", "reasoning": f"it is {i}", "answer_text": f"\\boxed{{{i}}}",
             "pred_answer": str(i), "verdict": "correct" if i % 2 else "incorrect", "correct": bool(i % 2)}
            for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store(tmp_path / "d.jsonl", index_dir=tmp_path / "idx")
    try:
        store.wait_index(30, search=True)
        assert store.page(Query("train", filters={"verdict": ["correct"]}))["total"] == 15
        assert store.page(Query("train", q="it is 7"))["total"] == 1
        assert store.row("train", 0, 7)["problem"] == "what is 7?"
    finally:
        store.close()


def test_highlight_prediction() -> None:
    h = highlight("so $\\boxed{\\frac{1}{2}}$ done", "\\frac{1}{2}")
    assert (h["match"], h["how"]) == ("\\frac{1}{2}", "verbatim")
    h = highlight("The answer is \\boxed{ 12 }.", "12.0")
    assert h["match"] == " 12 " and h["how"].startswith("boxed")
    assert highlight("nothing here", None)["how"] == "no prediction"


def test_cli_binds_loopback_and_bad_input_is_one_line(tmp_path: Path, version: Path) -> None:
    r = subprocess.run([CURATE, "view", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing" in r.stderr
    (tmp_path / "x.csv").write_text("a\n1\n")
    r = subprocess.run([CURATE, "view", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "x.csv" in r.stderr
    with socket.socket() as busy:  # a port in use: one clear line, exit 2
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = subprocess.run([CURATE, "view", str(version), "--port", str(busy.getsockname()[1])],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={**os.environ, "CURATE_HOME": str(tmp_path)})
        assert r.returncode == 2 and "error: --port" in r.stderr
    psutil = pytest.importorskip("psutil")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CURATE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([CURATE, "view", str(version), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert json.loads(get(f"http://127.0.0.1:{port}/healthz"))["train"]["rows"] > 0
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert listening and all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)



SAMPLED = """
name: sampled
version: 0.1.0
license: cc0-1.0
sources:
  - kind: file
    path: problems.jsonl
    fields: {problem: question, gold_answer: answer}
stages:
  - type: sample
    teacher: {backend: openai, model: loop-teacher, api_key_env: LOOP_KEY, concurrency: 4}
    n: 2
  - type: verify
    mode: filter
output:
  dir: out
"""


def test_sampled_version_links_rows_to_their_logged_responses(tmp_path: Path, monkeypatch) -> None:
    """End to end: ``curate run`` with a sample stage against the loopback teacher writes the
    request log under CURATE_HOME/<name>; the view finds each row's raw response by request hash."""
    from curate.testing.openai_server import OpenAIServer, Reply

    rows = [{"question": f"What is {i} plus 4?", "answer": str(i + 4)} for i in range(4)]
    (tmp_path / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "recipe.yaml").write_text(SAMPLED)

    def script(messages, params, index):
        i = int(messages[-1]["content"].split("What is ")[1].split(" ")[0])
        return Reply(content=f"The answer is \\boxed{{{i + 4 + index}}}.", reasoning_content=f"<b>{i}</b> plus 4, sample {index}")

    with OpenAIServer(script=script) as srv:
        env = {**os.environ, "OPENAI_BASE_URL": srv.base_url, "LOOP_KEY": "sk-test", "CURATE_HOME": str(tmp_path / ".curate")}
        r = subprocess.run([CURATE, "run", "recipe.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=240, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
    version = tmp_path / "out" / "sampled" / "0.1.0"
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    store = Store(version, index_dir=tmp_path / "idx")  # work folder from the manifest's name
    try:
        assert store.work_dir == tmp_path / ".curate" / "sampled"
        with Server(store) as base:
            for split in ("train", "rejected"):
                df = pl.read_parquet(sorted(glob.glob(str(version / "data" / f"{split}-*.parquet"))))
                assert df["request_hash"].null_count() == 0
                for k in range(df.height):
                    page = get(f"{base}/trace/{split}/0/{k}")
                    assert 'id="raw"' in page, (split, k)
                    # this sample's own logged text, escaped
                    raw = re.search(r'<h3>this sample</h3><pre class="text">(.*?)</pre>', page, re.DOTALL)
                    assert raw and f"&lt;b&gt;{df['problem'][k].split()[2]}&lt;/b&gt; plus 4, sample {df['sample_index'][k]}" \
                        in raw.group(1), (split, k)
    finally:
        store.close()
