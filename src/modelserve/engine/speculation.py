"""Draft tokens for speculative decoding, without a second model (pure logic).

A decoding sequence's next tokens are guessed from text it has already seen, then verified
in the same batched llama_decode as every other sequence: one row per drafted token, each
with logits. The greedy choice at each row either confirms the draft's next token or ends
the run there, so the output is exactly the output without speculation, only sooner.

Three sources, tried in order:
- the request's `prediction` (OpenAI's Predicted Outputs: code editors send the file they
  expect back): followed from where the output left it, re-found after an edit;
- a draft model (engine/draft_model.py), where the model has one: a small model sharing the
  tokenizer decodes its own greedy guess;
- prompt lookup (n-gram): the longest recent n-gram at the end of prompt + output that occurred
  earlier, and the tokens that followed it then (an answer quoting its prompt, code, lists).

Drafting costs rows in the batch, so it adapts: a sequence whose drafts keep failing stops
drafting for a while, and the draft grows while they keep being accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NGRAM_SIZES = (4, 3, 2)  # longest first: a longer match predicts better
MIN_DRAFT = 2
# A sequence whose recent drafts were accepted less than this often pauses drafting. The
# engine measures the right rate for its machine and model at warm-up (ModelRunner.
# decode_times): on a GPU drafted rows are nearly free; for SmolLM2 on 2 CPU cores one
# costs half a step, and drafts accepted less than ~60 % of the time slow decoding down.
MIN_ACCEPT_RATE = 0.5
PAUSE_STEPS = 16  # steps without drafts after a poor run, doubled after each further one
MAX_PAUSE_STEPS = 512
WINDOW = 32  # drafted tokens the acceptance rate is judged over
# Past this acceptance nothing pays: a step of many rows is where drafting stops.
MAX_NEEDED_ACCEPT = 0.9


def acceptance_needed(cost: float, ceiling: float) -> float:
    """How often drafts must be accepted to pay, when a drafted token costs `cost` of a step:
    above the cost, with a margin (rejected rows also hold the step back), 0.1 to `ceiling`."""
    return min(ceiling, max(0.1, 1.25 * cost))


DecodeTimes = dict[int, float]  # rows in one llama_decode -> its seconds, measured at warm-up


def step_time(times: DecodeTimes, rows: int) -> float:
    """A decode of `rows` rows, interpolated between the measured sizes and extrapolated
    beyond the largest along its last segment (there every row is compute)."""
    if rows in times:
        return times[rows]
    sizes = sorted(times)
    if len(sizes) == 1:
        return times[sizes[0]] * rows / sizes[0]
    # The measured segment around `rows`, or the last one beyond the largest size.
    above = next((i for i, n in enumerate(sizes) if n > rows), len(sizes) - 1)
    low, high = sizes[max(above, 1) - 1], sizes[max(above, 1)]
    slope = (times[high] - times[low]) / (high - low)
    return times[low] + slope * (rows - low)


def row_cost(times: DecodeTimes) -> float:
    """What one more row costs relative to a one-row step, over the first eight rows: on a GPU
    or for a big model on a CPU a step is bound by reading the weights and extra rows are
    nearly free (a few %); for a small model on a few CPU cores each row is compute and costs
    about half a step."""
    one = times[1]
    return max(0.0, (step_time(times, 8) - one) / 7) / one


def acceptance_at_load(times: DecodeTimes, streams: int, draft_max: int) -> float | None:
    """How often drafts must be accepted to pay while `streams` sequences decode, from the
    measured decode times; None where no draft can pay. With n streams each drafting k tokens,
    a step of n(1 + k) rows replaces one of n rows and yields n(1 + a k) tokens: it pays when
    a > (t(n(1 + k)) / t(n) - 1) / k, taken at the draft length that pays best (drafts grow
    while accepted). CPU kernels are not linear in rows (Qwen2.5-Coder-0.5B on 2 AVX-512
    cores: 1 row 19 ms, 9 rows 95 ms, 16 rows 115 ms, 32 rows 194 ms), so a fixed per-row
    cost misjudges them: there eight streams drafting from a prediction (~90 % accepted) gain
    ~30 %, where SmolLM2 (linear past 8 rows, a row ~0.5 of a step) stops paying at ~5. A
    lone stream may always try (its drafts pause themselves when they fall short)."""
    n = max(1, streams)
    base = step_time(times, n)
    if base <= 0:
        return acceptance_needed(0.0, MAX_NEEDED_ACCEPT)
    lengths = [k for k in (2, 4, 8, 16, 32, 64) if k <= max(draft_max, 2)]
    share = min((step_time(times, n * (1 + k)) / base - 1) / k for k in lengths)
    needed = acceptance_needed(max(0.0, share), 1.0)
    if n == 1:
        return min(needed, MAX_NEEDED_ACCEPT)
    return needed if needed < MAX_NEEDED_ACCEPT else None


class NgramIndex:
    """Where each n-gram of a growing token list occurred, and what followed it."""

    def __init__(self, tokens: list[int] | tuple[int, ...] = ()) -> None:
        self.tokens: list[int] = []
        # (n-gram) -> indexes of the tokens that followed its occurrences, ascending
        self._next: dict[tuple[int, ...], list[int]] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int] | tuple[int, ...]) -> None:
        for token in tokens:
            i = len(self.tokens)
            for n in NGRAM_SIZES:
                if i >= n:
                    self._next.setdefault(tuple(self.tokens[i - n:i]), []).append(i)
            self.tokens.append(token)

    def continuation(self, suffix: list[int], limit: int, after: int | None = None
                     ) -> tuple[int, list[int]]:
        """(index, tokens): what followed an occurrence of the longest n-gram ending `suffix`
        (the latest one, or with `after` the first one past that index), up to `limit`
        tokens; (-1, []) when none occurred."""
        for n in NGRAM_SIZES:
            if len(suffix) < n:
                continue
            found = self._next.get(tuple(suffix[-n:]))
            if not found:
                continue
            later = (i for i in found if after is not None and i > after)
            at = next(later, found[-1])
            return at, self.tokens[at:at + limit]
        return -1, []


@dataclass
class DraftState:
    """One sequence's drafting: its sources and how well its drafts have done."""

    history: NgramIndex
    prediction: NgramIndex | None = None
    ngram: bool = True  # draft from prompt + output too, not only from the prediction
    pred_next: int | None = 0  # index in the prediction the output follows at; None: lost
    pred_seen: int = 0  # how far into the prediction the output has followed it
    length: int = 4  # tokens to draft next time (grows while accepted)
    pause: int = 0  # steps left without drafting
    poor_runs: int = 0  # poor windows in a row (each doubles the next pause)
    recent: list[tuple[int, int]] = field(default_factory=list)  # (drafted, accepted)
    last_from_prediction: bool = False
    min_accept: float = MIN_ACCEPT_RATE
    load_accept: float = 0.0  # what the present number of decoding streams needs (scheduler)
    accepted_prediction: int = 0  # drafted prediction tokens the output took
    # (prompt + output, want) -> a draft model's guess of the next tokens
    model: Callable[[list[int], int], list[int]] | None = None

    def draft(self, output: list[int], limit: int, max_length: int) -> list[int]:
        """Tokens to verify after the sequence's last output token (may be empty)."""
        self.last_from_prediction = False
        if limit < MIN_DRAFT:
            return []
        if self.pause > 0:
            self.pause -= 1
            return []
        want = min(limit, self.length, max_length)
        if self.prediction is not None:
            tokens = _text_only(self._from_prediction(output, want))
            if len(tokens) >= MIN_DRAFT:
                self.last_from_prediction = True
                return tokens
        if self.model is not None:
            return self.model(self.history.tokens, want)
        if not self.ngram:
            return []
        _, tokens = self.history.continuation(self.history.tokens, want)
        tokens = _text_only(tokens)
        return tokens if len(tokens) >= MIN_DRAFT else []

    def _from_prediction(self, output: list[int], want: int) -> list[int]:
        assert self.prediction is not None
        pred = self.prediction.tokens
        if self.pred_next is None:  # re-find the output's end in the prediction
            at, _ = self.prediction.continuation(output, want, after=self.pred_seen)
            self.pred_next = at if at >= 0 else None
        if self.pred_next is None:
            return []
        return pred[self.pred_next:self.pred_next + want]

    def record(self, drafted: list[int], accepted: int, new_tokens: list[int],
               max_length: int) -> None:
        """After a step: `accepted` of `drafted` were confirmed; `new_tokens` (the accepted
        drafts and the model's own next token) joined the output."""
        self.history.extend(new_tokens)
        if self.prediction is not None:
            if self.last_from_prediction:
                self.accepted_prediction += accepted
            self._follow_prediction(new_tokens)
        if not drafted:
            return
        self.recent.append((len(drafted), accepted))
        while sum(d for d, _ in self.recent) > WINDOW and len(self.recent) > 1:
            self.recent.pop(0)
        if accepted == len(drafted):
            self.length = min(self.length * 2, max_length)
        elif accepted < len(drafted) // 2:
            self.length = max(MIN_DRAFT, self.length // 2)
        tried = sum(d for d, _ in self.recent)
        if tried < WINDOW // 2:
            return
        if sum(a for _, a in self.recent) < max(self.min_accept, self.load_accept) * tried:
            # Every retry costs a window of mostly rejected rows: retry less and less often.
            self.pause = min(PAUSE_STEPS << self.poor_runs, MAX_PAUSE_STEPS)
            self.poor_runs += 1
            self.recent, self.length = [], MIN_DRAFT * 2
        else:
            self.poor_runs = 0

    def _follow_prediction(self, new_tokens: list[int]) -> None:
        assert self.prediction is not None
        pred = self.prediction.tokens
        for token in new_tokens:
            at = self.pred_next
            if at is not None and at < len(pred) and pred[at] == token:
                self.pred_next = self.pred_seen = at + 1
            else:
                self.pred_next = None


def _text_only(tokens: list[int]) -> list[int]:
    """The draft up to its first image pseudo-token (negative: not a token to decode)."""
    cut = next((i for i, t in enumerate(tokens) if t < 0), len(tokens))
    return tokens[:cut]


def start_drafting(prompt: list[int], prediction: tuple[int, ...], ngram: bool,
                   min_accept: float = MIN_ACCEPT_RATE,
                   model: Callable[[list[int], int], list[int]] | None = None) -> DraftState:
    """`model`: a draft model's guesses for this sequence (not for one with images, whose
    pseudo-tokens no model decodes)."""
    if any(token < 0 for token in prompt):
        model = None
    return DraftState(history=NgramIndex(prompt),
                      prediction=NgramIndex(prediction) if prediction else None, ngram=ngram,
                      min_accept=min_accept, model=model)
