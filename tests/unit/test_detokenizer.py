from modelserve.engine.detokenizer import IncrementalText


def feed(text: IncrementalText, pieces: list[bytes]) -> str:
    return "".join(text.push(p) for p in pieces) + text.flush()


def test_plain_text_passes_through() -> None:
    assert feed(IncrementalText(), [b"Hel", b"lo", b" world"]) == "Hello world"


def test_utf8_split_across_tokens_is_joined() -> None:
    snowman = "☃".encode()
    text = IncrementalText()
    assert text.push(snowman[:1]) == ""
    assert text.push(snowman[1:]) == "☃"


def test_stop_string_is_cut_and_never_emitted() -> None:
    text = IncrementalText(("END",))
    out = [text.push(b"abc E"), text.push(b"N"), text.push(b"D tail")]
    assert "".join(out) == "abc "
    assert text.stopped
    assert text.push(b"more") == "" and text.flush() == ""


def test_partial_stop_prefix_is_released_when_it_diverges() -> None:
    text = IncrementalText(("STOP",))
    assert text.push(b"x ST") == "x "
    assert text.push(b"AR") == "STAR"
    assert not text.stopped


def test_held_back_tail_is_flushed_at_end() -> None:
    text = IncrementalText(("\n\n",))
    assert text.push(b"line\n") == "line"
    assert text.flush() == "\n"


def test_earliest_of_several_stops_wins() -> None:
    assert feed(IncrementalText(("b", "a")), [b"xxab"]) == "xx"
