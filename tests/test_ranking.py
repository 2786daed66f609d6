"""Code-aware ranking: the rules on their own, and on a real small repo's index."""

from __future__ import annotations

import contextlib

import pytest
from conftest import make_repo

from codelearn.index import ranking
from codelearn.index.catalog import StoredChunk
from codelearn.index.chunk import Chunk
from codelearn.index.indexer import run_index
from codelearn.index.search import Searcher
from codelearn.project import open_project


@contextlib.contextmanager
def keyword_searcher(tmp_path, monkeypatch, files: dict[str, str]):
    """A searcher over a fresh repo of `files`, indexed for keyword search only."""
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    project = open_project(make_repo(tmp_path / "repo", files))
    run_index(project, wait=True)
    searcher = Searcher(project)
    try:
        yield searcher
    finally:
        searcher.close()


def _stored(cid: int, path: str, symbol: str = "", kind: str = "function", test: bool = False) -> StoredChunk:
    return StoredChunk(cid, "repo", Chunk(path, "python", kind, symbol, 1, 2, "x"), test, None)


def test_stems_match_across_spellings_and_forms():
    assert ranking.stem("serialising") == ranking.stem("serialize") == ranking.stem("serializer")
    assert ranking.stem("urls") == "url" and ranking.stem("is") == "is"
    assert ranking.path_stems("json/encoder.py") >= {"json", ranking.stem("encoder")}


def test_auxiliary_code_is_recognised():
    for path, kind in (("examples/demo.py", "function"), ("docs/conf.py", "module"),
                       ("pkg/_compat.py", "function"), ("pkg/__init__.py", "module")):
        assert ranking.is_auxiliary(path, kind), path
    for path, kind in (("pkg/core.py", "function"), ("pkg/__init__.py", "function")):
        assert not ranking.is_auxiliary(path, kind), path


def test_the_per_file_cap_lets_other_files_in(monkeypatch):
    monkeypatch.setattr(ranking, "PER_FILE_CAP", 2)
    chunks = {i: _stored(i, "big.py" if i < 5 else f"f{i}.py") for i in range(8)}
    scores = {i: 1.0 - i / 10 for i in chunks}
    top = [cid for cid, _ in ranking.top(scores, chunks, 5)]
    assert top == [0, 1, 5, 6, 7]  # big.py's 3rd-5th chunks wait behind the other files


def test_coherence_lifts_a_files_best_chunk(monkeypatch):
    monkeypatch.setattr(ranking, "COHERENCE_BONUS", 0.05)
    chunks = {1: _stored(1, "a.py"), 2: _stored(2, "a.py"), 3: _stored(3, "a.py"), 4: _stored(4, "b.py")}
    out = ranking.adjust({1: 0.5, 2: 0.4, 3: 0.3, 4: 0.55}, chunks, ranking.Query.parse("anything"))
    assert out[1] == pytest.approx(0.6) and out[1] > out[4] and out[2] == pytest.approx(0.4)


IMPLEMENTATION = '''\
def apply_discount(cart, percent):
    """Reduce every line's price of the cart by a percentage and return the new total."""
    for line in cart.lines:
        line.price = round(line.price * (100 - percent) / 100, 2)
    return sum(line.price for line in cart.lines)
'''
TESTS = "\n\n".join(f'''\
def test_apply_discount_{n}():
    """The discount is applied to the cart total ({n})."""
    cart = make_cart(price={n})
    assert apply_discount(cart, 10) == {n} * 0.9
''' for n in range(1, 8))


def test_a_test_file_never_outranks_the_code_it_tests(tmp_path, monkeypatch):
    files = {"shop/cart.py": IMPLEMENTATION, "tests/test_cart.py": TESTS}
    with keyword_searcher(tmp_path, monkeypatch, files) as searcher:
        for question in ("how is the discount applied to the cart total?", "apply_discount",
                         "where do we reduce the price of every line by a percentage"):
            hits = searcher.search(question, k=5)
            assert hits[0].path == "shop/cart.py", (question, [h.path for h in hits])


def test_identifiers_in_a_query_are_the_terms_written_like_code():
    q = ranking.Query.parse("Where is MAX_RETRIES set, and what does os.path.sep or HTTPConnection hold? Where")
    assert q.identifiers == {"MAX_RETRIES", "sep", "HTTPConnection"}
    assert ranking.Query.parse("where are retries counted?").identifiers == frozenset()


@pytest.mark.parametrize("text", [
    "MAX_RETRIES = 5", "MAX_RETRIES: int = 5", "#define MAX_RETRIES 5", "#  define MAX_RETRIES(x) (x)",
    "export const MAX_RETRIES = 5;", "pub static MAX_RETRIES: u32 = 5;", "typedef struct retry_s MAX_RETRIES;",
    "import os\n\nTIMEOUT = 3\nMAX_RETRIES = 5\n",
])
def test_top_level_definitions_of_a_name_are_recognised(text):
    assert ranking.defines(text, frozenset({"MAX_RETRIES"}))


@pytest.mark.parametrize("text", [
    "x = MAX_RETRIES", "if MAX_RETRIES == 5:", "MAX_RETRIES(3)", "MAX_RETRIES_LONG = 1", "# MAX_RETRIES = 5 was too low",
])
def test_uses_of_a_name_are_not_definitions(text):
    assert not ranking.defines(text, frozenset({"MAX_RETRIES"}))


def test_a_class_head_ranks_below_the_method_that_does_the_work_unless_the_class_is_named():
    chunks = {1: _stored(1, "q.py", "Queue", kind="header"), 2: _stored(2, "q.py", "Queue.get", kind="method")}
    out = ranking.adjust({1: 0.5, 2: 0.4}, chunks, ranking.Query.parse("how does a consumer wait for an item"))
    assert out[2] > out[1]
    out = ranking.adjust({1: 0.5, 2: 0.45}, chunks, ranking.Query.parse("Where is the Queue class defined?"))
    assert out[1] > out[2]


SETTINGS = '''\
"""Settings of the HTTP client."""
import os

TIMEOUT = float(os.environ.get("CLIENT_TIMEOUT", "3"))
MAX_RETRIES = 5
BACKOFF = 0.5
'''
CLIENT = '''\
from settings import BACKOFF, MAX_RETRIES


def fetch(session, url):
    """Get a URL, trying again with a growing pause after each failure."""
    for attempt in range(MAX_RETRIES):
        try:
            return session.get(url)
        except OSError:
            if attempt + 1 == MAX_RETRIES:
                raise
            session.sleep(BACKOFF * 2 ** attempt)  # MAX_RETRIES attempts at most
'''


def test_a_constant_is_found_where_it_is_defined_not_where_it_is_used(tmp_path, monkeypatch):
    with keyword_searcher(tmp_path, monkeypatch, {"settings.py": SETTINGS, "client.py": CLIENT}) as searcher:
        hits = searcher.search("Where is MAX_RETRIES defined?", k=3)
    assert hits[0].path == "settings.py" and hits[0].kind == "module", [(h.path, h.symbol) for h in hits]


def test_quoted_phrases_are_kept_word_for_word():
    q = ranking.Query.parse('''Where is "port must be between 1 and 65535" raised, or `parse_port`, or 'bad  Port value'?''')
    assert q.quoted == (" port must be between 1 and 65535 ", " parse_port ", " bad port value ")
    assert ranking.Query.parse("why doesn't it know what isn't there, or 'x'?").quoted == ()
    assert " port must be between 1 and 65535 " in ranking.words_of('raise ValueError("Port must be between 1 and 65535")')
    assert " must be between 1 and 6553 " not in ranking.words_of("must be between 1 and 65535")
    pasted = ranking.Query.parse("Traceback (most recent call last):\nValueError: port 99999 is out of range")
    assert pasted.quoted == (" port 99999 is out of range ",)


def test_a_message_with_its_values_filled_in_still_matches_in_part():
    code = ranking.words_of('raise ValueError(f"port {number} is out of the allowed range")')
    assert ranking.quote_match((" port 99999 is out of the allowed range ",), code) == pytest.approx(
        ranking.PARTIAL_QUOTE * 5 / 7)
    assert ranking.quote_match((" port is out of the allowed range ",), " x port is out of the allowed range y ") == 1.0
    assert ranking.quote_match((" port 99999 unknown here ",), code) == 0.0  # 1 of 4 word pairs


PORTS = '''\
def check_port_range(low, high):
    """A port range is valid when each port is between 1 and 65535 and low <= high: the port
    must be a number, and a port outside 1..65535 must be refused."""
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {low}-{high}: each port must lie between 1 and 65535")
    return range(low, high + 1)


def parse_port(text, default=None, *, allow_zero=False):
    text = text.strip()
    if not text and default is not None:
        return default
    number = int(text, 10)
    if number == 0 and allow_zero:
        return number
    if not 1 <= number <= 65535:
        raise ValueError("port must be between 1 and 65535")
    return number


def out_of_range_ports(ports):
    """Ports out of range: a port is out of range when it is not in 1-65535 (web ports too)."""
    return [port for port in ports if not 1 <= port <= 65535]


def port_for(service, ports):
    """The port a service listens on, checked against the range 1-65535 of valid ports."""
    port = ports.get(service, 0)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535) for {service!r}")
    return port
'''


# Other modules, so that bm25's word weights mean something (a handful of chunks makes every word common).
FILLER = {f"net/util{n}.py": "\n\n".join(f'''\
def helper_{n}_{m}(items, limit={m}):
    """Keep the first {m} items whose name is out of the ordinary for module {n}."""
    return [item for item in items[:limit] if item.name not in ("a", "b")]
''' for m in range(4)) for n in range(6)}


def test_a_pasted_error_message_finds_the_code_that_raises_it(tmp_path, monkeypatch):
    with keyword_searcher(tmp_path, monkeypatch, {"net/ports.py": PORTS, **FILLER}) as searcher:
        quoted = searcher.search('ValueError: "port must be between 1 and 65535"', k=3)
        pasted = searcher.search("ValueError: port 70000 is out of range (1-65535) for 'web'", k=3)
    assert quoted[0].symbol == "parse_port", [h.symbol for h in quoted]
    assert pasted[0].symbol == "port_for", [h.symbol for h in pasted]
