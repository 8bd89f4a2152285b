"""Text to IPA phonemes for Piper voices, by running Debian's `espeak-ng` program.

Piper voices were trained on espeak-ng's IPA output. The libraries that call espeak-ng in
process (piper-tts, piper-phonemize, phonemizer-fork, espeakng-loader) are GPL, so this module
runs the `espeak-ng` program as a subprocess instead: a separate program at arm's length, never
linked or imported. One call per sentence costs ~35 ms, far less than synthesising it.

Text is spoken sentence by sentence (`split_sentences`) so the first audio can be sent while
the rest is still being synthesised.
"""

from __future__ import annotations

import re
import shutil
import subprocess

PROGRAM = "espeak-ng"
TIMEOUT_S = 10.0
# A longer run of text without punctuation is cut at whitespace: one synthesis pass grows with
# the input (memory and latency), and espeak-ng itself never breaks such a run into clauses.
MAX_SENTENCE_CHARS = 400

# A sentence ends at . ! or ? (and any closing quotes or brackets) before whitespace, so
# "3.50" and "example.com" stay whole. A line break also ends one: headings and list items
# usually carry no final punctuation.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)|\n")
# Punctuation that ends a clause, as espeak-ng sees it: followed by whitespace or the end.
_CLAUSE_END = re.compile(r"([,;:.!?])[,;:.!?]*[\"'\u201d\u2019\u00bb)\]]*(?=\s|$)")
# espeak-ng marks a word it reads in another language's voice as "(fr)word(en)"; piper drops
# the markers, which are not phonemes.
_LANGUAGE_FLAG = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+/-]*")


class EspeakMissing(RuntimeError):
    """The `espeak-ng` program is not on PATH."""

    def __init__(self) -> None:
        super().__init__(
            "text-to-speech needs the espeak-ng program on PATH to turn text into phonemes: "
            "install it with your system's package manager (Debian/Ubuntu: "
            "`apt-get install espeak-ng`)"
        )


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, whitespace collapsed, in order.

    Never returns an empty string, nor a piece without a letter or digit (a stray "*" or "--"
    has nothing to say). Sentences longer than MAX_SENTENCE_CHARS are cut at whitespace.
    """
    pieces: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if not _abbreviation(end, text):
            pieces.append(text[start:end.end()])
            start = end.end()
    pieces.append(text[start:])
    sentences: list[str] = []
    for piece in pieces:
        sentence = " ".join(piece.split())
        if any(c.isalnum() for c in sentence):
            sentences.extend(_cut_long(sentence))
    return sentences


def _cut_long(sentence: str) -> list[str]:
    """`sentence` in pieces of at most MAX_SENTENCE_CHARS, cut at spaces where it can be."""
    pieces: list[str] = []
    while len(sentence) > MAX_SENTENCE_CHARS:
        cut = sentence.rfind(" ", 0, MAX_SENTENCE_CHARS + 1)
        if cut <= 0:  # one "word" longer than the limit: cut inside it
            cut = MAX_SENTENCE_CHARS
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def phonemize(sentence: str, voice: str = "en-us") -> str:
    """IPA phonemes for one sentence, as Piper voices expect them.

    espeak-ng prints one line per clause and drops the punctuation; piper puts it back (a
    comma, colon or semicolon plus a space between clauses, and the final . ? or !), and the
    voices were trained with it, so the pauses and intonation come out right. Raises
    EspeakMissing without the program, RuntimeError if it fails or takes over TIMEOUT_S.
    """
    text = " ".join(sentence.split())
    if not text:
        return ""
    if not _VOICE_NAME.fullmatch(voice):
        raise ValueError(f"not an espeak-ng voice name: {voice!r}")
    program = shutil.which(PROGRAM)
    if program is None:
        raise EspeakMissing()
    # The text goes on stdin, never on the command line: no shell, and a text that starts
    # with "-" cannot be read as an option. -b 1: the input is UTF-8.
    command = [program, "-q", "--ipa", "-b", "1", "-v", voice, "--stdin"]
    try:
        done = subprocess.run(command, input=text.encode(), capture_output=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"espeak-ng took over {TIMEOUT_S:g} s on {text[:80]!r}") from exc
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed ({done.returncode}): {error}")
    output = _LANGUAGE_FLAG.sub("", done.stdout.decode(errors="replace"))
    clauses = [line.strip() for line in output.splitlines() if line.strip()]
    return join_clauses(clauses, text)


def join_clauses(clauses: list[str], text: str) -> str:
    """espeak-ng's clause lines for `text` joined with the punctuation that ended each clause.

    The program does not say which punctuation ended a clause, so it is read from the text:
    when the text has as many clause ends as there are lines (or one fewer, the last clause
    unpunctuated), they pair up in order. Otherwise the lines are joined with spaces and only
    the sentence's final punctuation is kept.
    """
    if not clauses:
        return ""
    found = [m for m in _CLAUSE_END.finditer(text) if not _abbreviation(m, text)]
    ends = [m.group(1) for m in found]
    if len(ends) not in (len(clauses), len(clauses) - 1):
        final = found[-1].group(1) if found and found[-1].end() == len(text) else ""
        ends = [""] * (len(clauses) - 1) + [final if final in ".!?" else ""]
    joined = "".join(clause + end + " " for clause, end in zip(clauses, ends, strict=False))
    joined += " ".join(clauses[len(ends):])
    return joined.strip()


def _abbreviation(end: re.Match[str], text: str) -> bool:
    """Whether espeak-ng reads this clause end as part of a word instead: a lone "." before a
    lowercase word ("e.g. this", "etc. and") does not end an English clause for espeak-ng,
    while "..." or a "." before a capital or a digit does."""
    following = text[end.end():].lstrip()
    return end.group(0) == "." and following[:1].islower()
