"""A Piper (VITS) voice run on onnxruntime: one sentence of text in, float32 samples out.

Piper's own Python package is GPL and links espeak-ng, so this is a small runner of our own
over the public voice format: an `.onnx` model plus its `.onnx.json` config, which carries the
sample rate, the espeak-ng voice, the inference scales and the phoneme-to-id table. Phonemes
come from the `espeak-ng` program (modelserve.audio.phonemes).
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.audio.phonemes import phonemize

Samples = npt.NDArray[np.float32]

PAD = "_"  # after every phoneme (and after BOS): the voices were trained with it in between
BOS = "^"
EOS = "$"
# Each sentence is scaled so its loudest sample sits here, as piper scales it to full scale,
# but a little below 1.0 so lossy encoders (mp3, aac) have headroom and do not clip.
PEAK = 0.95


def phonemes_to_ids(phonemes: str, id_map: dict[str, list[int]]) -> list[int]:
    """Piper's ids for a phoneme string: BOS, PAD, then each codepoint of the NFD-normalised
    string followed by PAD, then EOS; codepoints the voice does not know are skipped.

    PAD after BOS is what piper-phonemize (the training side) writes, so it is kept here."""
    ids = [*id_map[BOS], *id_map[PAD]]
    for phoneme in unicodedata.normalize("NFD", phonemes):
        if phoneme in id_map:
            ids += id_map[phoneme]
            ids += id_map[PAD]
    ids += id_map[EOS]
    return ids


class PiperVoice:
    """One loaded Piper voice. Thread-safe: onnxruntime sessions may be run concurrently."""

    def __init__(self, model_path: Path, config_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        config: dict[str, Any] = json.loads(Path(config_path).read_text(encoding="utf-8"))
        phoneme_type = config.get("phoneme_type", "espeak")
        if phoneme_type != "espeak":
            raise ValueError(f"{config_path}: phoneme_type {phoneme_type!r} is not supported "
                             "(only espeak voices)")
        self.sample_rate: int = int(config["audio"]["sample_rate"])
        self.espeak_voice: str = str(config["espeak"]["voice"])
        inference = config.get("inference", {})
        self.noise_scale = float(inference.get("noise_scale", 0.667))
        self.length_scale = float(inference.get("length_scale", 1.0))
        self.noise_w = float(inference.get("noise_w", 0.8))
        self.id_map: dict[str, list[int]] = {
            str(k): [int(i) for i in v] for k, v in config["phoneme_id_map"].items()
        }
        self.num_speakers = int(config.get("num_speakers", 1))
        self.speakers: dict[str, int] = {
            str(k): int(v) for k, v in (config.get("speaker_id_map") or {}).items()
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Idle ORT workers spinning would take the cores the API process and the encoders need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), options,
                                             providers=["CPUExecutionProvider"])

    def phoneme_ids(self, phonemes: str) -> list[int]:
        """This voice's ids for `phonemes` (see phonemes_to_ids)."""
        return phonemes_to_ids(phonemes, self.id_map)

    def synthesize(self, sentence: str, speaker_id: int | None = None,
                   speed: float = 1.0) -> Samples:
        """Mono float32 samples in [-1, 1] at `sample_rate` for one sentence (empty if it has
        nothing to say). `speed` 2.0 speaks twice as fast; `speaker_id` picks a speaker of a
        multi-speaker voice (default the first)."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        if speaker_id is not None and not 0 <= speaker_id < max(self.num_speakers, 1):
            raise ValueError(f"speaker {speaker_id} is not one of this voice's "
                             f"{self.num_speakers}")
        ids = self.phoneme_ids(phonemize(sentence, self.espeak_voice))
        if len(ids) <= 3:  # BOS PAD EOS: no phoneme the voice knows
            return np.zeros(0, dtype=np.float32)
        feeds: dict[str, npt.NDArray[Any]] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([self.noise_scale, self.length_scale / speed, self.noise_w],
                               dtype=np.float32),
        }
        if self.num_speakers > 1:
            feeds["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        audio = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
        return normalize(audio)


def normalize(audio: Samples) -> Samples:
    """`audio` scaled so its peak is PEAK, as piper scales each sentence (never amplifying
    near-silence by more than piper's 1/0.01)."""
    peak = max(float(np.max(np.abs(audio))) if audio.size else 0.0, 0.01)
    scaled: Samples = np.clip(audio * np.float32(PEAK / peak), -1.0, 1.0).astype(np.float32)
    return scaled
