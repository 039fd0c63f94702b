"""Credentials disappear from headers, text, bytes and nested values; ordinary text stays."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight.analysis.redact import redact_bytes, redact_headers, redact_text, redact_value

KEYS = {
    "sk-ant": "sk-ant-api03-Zr8wQk2VnT5yLm1XcB7sPd4FgH9jK0aUeIo3RtYu6WqEzA",
    "sk": "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp",
    "AIza": "AIzaSyD4fakeFakeFake1234567890abcdEFGH",
    "github": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


@pytest.mark.parametrize("kind,key", KEYS.items())
def test_key_formats_in_free_text(kind: str, key: str) -> None:
    out = redact_text(f"the key is {key}, keep it safe")
    assert key not in out and f"[REDACTED:{kind}]" in out and out.startswith("the key is ")
    assert key.encode() not in redact_bytes(f"x={key}".encode())


def test_headers() -> None:
    h = redact_headers([["Authorization", "Bearer " + KEYS["sk"]], ["x-api-key", KEYS["sk-ant"]],
                        ["Cookie", "session=abc"], ["X-Custom-Token", "t0k"], ["Content-Type", "application/json"]])
    assert h == [["Authorization", "[REDACTED:sk]"], ["x-api-key", "[REDACTED:sk-ant]"],
                 ["Cookie", "[REDACTED:cookie]"], ["X-Custom-Token", "[REDACTED:x-custom-token]"],
                 ["Content-Type", "application/json"]]


def test_raw_http_head_bytes() -> None:
    raw = b"POST /v1/x?key=abc123&alt=sse HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\nHost: h\r\n\r\n{}"
    out = redact_bytes(raw)
    assert b"dXNlcjpwYXNz" not in out and b"abc123" not in out and b"alt=sse" in out and b"Host: h" in out


def test_json_fields_and_query() -> None:
    body = '{"api_key": "plain-secret-value", "password": "hunter22", "monkey": "banana", "max_tokens": 10}'
    out = redact_text(body)
    assert "plain-secret-value" not in out and "hunter22" not in out
    assert '"monkey": "banana"' in out and '"max_tokens": 10' in out
    assert redact_text("https://x/y?access_token=abcdef&q=1") == "https://x/y?access_token=[REDACTED:secret]&q=1"


def test_prose_is_left_alone() -> None:
    text = "Bearer authentication uses a token; basic understanding of tasks and skills is enough."
    assert redact_text(text) == text


def test_nested_values() -> None:
    v = {"headers": [["X-Api-Key", "abc"]], "api_key": "zzz", "nested": [{"text": KEYS["AIza"]}], "n": 3,
         "raw": KEYS["sk"].encode()}
    out = redact_value(v)
    assert out["headers"] == [["X-Api-Key", "[REDACTED:x-api-key]"]]
    assert out["api_key"] == "[REDACTED:api_key]" and out["n"] == 3
    assert out["nested"][0]["text"] == "[REDACTED:AIza]" and out["raw"] == b"[REDACTED:sk]"


def test_idempotent() -> None:
    once = redact_text(f'Authorization: Bearer {KEYS["sk"]}\n{{"api_key": "{KEYS["sk-ant"]}"}}')
    assert redact_text(once) == once


PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
       "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----")


@pytest.mark.parametrize("label", ["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
def test_pem_private_key_blocks_whole_raw_or_json_escaped(label: str) -> None:
    pem = PEM.replace("PRIVATE KEY", f"{label}PRIVATE KEY")
    for text in (f"here: {pem} done", '{"key_file": ' + __import__("json").dumps(pem) + "}"):
        out = redact_text(text)
        assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in out and "[REDACTED:private-key]" in out, out
        assert "MzEfYyjiWA4R4" not in redact_bytes(text.encode()).decode()
    # A block cut short (no END line yet) is redacted to its end too.
    assert "MzEfYyjiWA4R4" not in redact_text(pem.split("-----END")[0])
    assert redact_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----") \
        == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_a_query_string_held_alone_is_redacted_from_its_first_parameter() -> None:
    assert redact_text("key=not-a-google-key-123&alt=sse") == "key=[REDACTED:secret]&alt=sse"
    assert redact_text("alt=sse&key=abc123") == "alt=sse&key=[REDACTED:secret]"
    assert redact_text("monkey=banana") == "monkey=banana"


SPLIT_SECRETS = [
    b"Authorization: Bearer " + KEYS["sk"].encode() + b"\r\n",
    b"x-api-key: " + KEYS["sk-ant"].encode() + b"\r\n",
    b'{"text": "your key is ' + KEYS["sk-ant"].encode() + b' ok"}',
    b"GET /v1/models?key=" + b"plainsecretvalue99" + b" HTTP/1.1\r\n",
    PEM.encode(),
]


@pytest.mark.parametrize("secret", SPLIT_SECRETS)
def test_a_secret_split_across_records_is_redacted_whole(secret: bytes) -> None:
    from agentsight.analysis.redact import StreamRedactor

    stream = b"POST /v1/messages HTTP/1.1\r\nHost: api\r\n" + secret + b"\r\nafter the secret"
    core = secret.split(b": ")[-1].split(b"=")[-1][10:30]
    for cut in range(1, len(stream)):
        for pieces in ([stream[:cut], stream[cut:]], [stream[:cut], stream[cut:cut + 7], stream[cut + 7:]]):
            r = StreamRedactor()
            out = b"".join(r.feed(p) for p in pieces) + r.flush()
            assert core not in out, (cut, out)
            assert out.endswith(b"after the secret")
    # Nothing is held back without a reason: plain text goes out as it comes.
    r = StreamRedactor()
    assert r.feed(b"plain text, nothing secret here\n") == b"plain text, nothing secret here\n"


def test_a_key_cut_by_an_earlier_redaction_is_not_left_half_shown() -> None:
    """Pieces redacted before reassembly (a key echoed across two answer deltas): the marker swallows the rest."""
    joined = redact_text("[REDACTED:sk-ant]" + KEYS["sk-ant"][25:] + " ok")
    assert joined == "[REDACTED:sk-ant] ok"
    assert redact_text("[REDACTED:bearer]abc.def-ghi and more") == "[REDACTED:bearer] and more"


# --------------------------------------------------------------------------- long texts: Hyperscan or the automaton

_PIECES = [*KEYS.values(), '"api_key": "s3cr3t-value"', "'Password': 'hunter22'", "Bearer abcdefghijkl0123",
           "BEARER xyz0123456789abc", "?key=AIzaSecret&alt=sse", PEM, "Authorization: Basic dXNlcjpwYXNz",
           "[REDACTED:sk-ant]tail0123", "Sk-Ant-not-a-key", "ghp_short", "token: abc", "é", "\u00df", "plain words "]


@pytest.fixture(params=["hyperscan", "automaton"])
def finder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Long texts redacted with their hints found by Hyperscan (where installed) or by the automaton."""
    from agentsight.analysis import redact

    if request.param == "automaton":
        for rules in (redact._BYTES_RULES, redact._STR_RULES):
            monkeypatch.setattr(rules.big_text, "usable", False)
    elif redact._BYTES_RULES.big_text.find(b"x" * redact.BIG_TEXT) is None:
        pytest.skip("Hyperscan is not installed here (it is on x86-64)")
    return str(request.param)


def test_hyperscan_is_what_finds_hints_in_long_texts_on_x86_64() -> None:
    import platform

    from agentsight.analysis.redact import _BYTES_RULES, BIG_TEXT

    if platform.machine() != "x86_64":
        pytest.skip("Hyperscan has wheels for x86-64 only")
    text = b"x" * BIG_TEXT + b'{"API_KEY": "abc"} sk-ant-'
    assert sorted(_BYTES_RULES.big_text.find(text) or []) == sorted(
        (i, start) for i, start, _ in _BYTES_RULES.matcher.find_matches_as_indexes(text.lower(), overlapping=True))


def test_a_long_text_loses_every_secret_whichever_finds_the_hints(finder: str) -> None:
    from agentsight.analysis.redact import BIG_TEXT

    pad = "the agent reads files and runs commands; " * (BIG_TEXT // 40 + 1)
    for key in KEYS.values():
        text = pad + f'{{"messages": [{{"content": "use {key} now"}}], "api_key": "abcd1234"}}' + pad
        for out in (redact_text(text), redact_bytes(text.encode()).decode()):
            assert key not in out and "abcd1234" not in out and out.startswith(pad) and out.endswith(pad)
    # Non-ASCII text (the automaton's path for str, whatever is installed) too.
    text = "é" + pad + KEYS["sk-ant"] + pad
    assert KEYS["sk-ant"] not in redact_text(text) and KEYS["sk-ant"].encode() not in redact_bytes(text.encode())


@given(st.lists(st.sampled_from(_PIECES) | st.text(alphabet="abcXYZ:=\"' -_\n", max_size=20), max_size=40),
       st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_hyperscan_and_the_automaton_redact_long_texts_alike(pieces: list[str], pad_kind: int) -> None:
    from agentsight.analysis import redact

    pad = ["", "x", "key ", "Bearer "][pad_kind] * (redact.BIG_TEXT // 4 + 1)
    text = pad + "".join(pieces) + pad
    fast = (redact_text(text), redact_bytes(text.encode()))
    for rules in (redact._BYTES_RULES, redact._STR_RULES):
        rules.big_text.usable = False
    try:
        slow = (redact_text(text), redact_bytes(text.encode()))
    finally:
        for rules in (redact._BYTES_RULES, redact._STR_RULES):
            rules.big_text.usable = True
    assert fast == slow


def test_without_hyperscan_long_texts_are_searched_by_the_automaton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Hyperscan is not installed (no wheel for the machine), the first long text finds out
    once, and every text is redacted all the same."""
    import sys

    from agentsight.analysis.redact import _BYTES_RULES, BIG_TEXT, BigTextHints

    monkeypatch.setitem(sys.modules, "hyperscan", None)  # import hyperscan: ImportError
    hints = BigTextHints(_BYTES_RULES.hints)
    assert hints.find(b"x" * BIG_TEXT) is None and not hints.usable
    monkeypatch.setattr(_BYTES_RULES, "big_text", hints)
    text = b"x" * BIG_TEXT + b" key: " + KEYS["sk"].encode() + b" Bearer abcdefghijkl0123"
    out = redact_bytes(text)
    assert KEYS["sk"].encode() not in out and b"abcdefghijkl0123" not in out and out.startswith(b"x" * BIG_TEXT)
