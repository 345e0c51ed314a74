"""Teacher-forced rollouts of a stateful LM package (the fast layout's `lm`): every state after every call.

Prefill: a real sequence longer than one chunk (the short text, the audio-start token, the speech
clip's patches, cycled) goes through `prefill` with several numbers of new rows per call — a whole
chunk, an odd number that splits chunks unevenly, one (the one-position-at-a-time prefill) —, as
the generator schedules calls (`contract.fast.prefill_calls`). After every call every state's
written slots are compared with voxcpm's caches, the slots beyond must be zero, and the final
states of each chunked run are compared with the one-position run's. Step: a fresh state gets the
reference's caches at `start` (as the published rollouts seed theirs), then `steps` patches go
through `step`, the package reading its own states from then on, every output and every state
compared at every step. Inputs stay teacher-forced, so an error can compound only through the states.

FSQ rounds the base LM's hidden to integer codes, and a code at a rounding boundary may flip in fp16
(TRIALS.md, "FSQ rounding"). Both functions return the FSQ'd hidden (`lm_hidden`); where the
reference's code is within `fsq_margin` of a boundary the reference takes the package's code
(`FSQReference.expected`), and its residual LM, mu and stop logit follow — a flip far from a
boundary, or any other error, still shows in full.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from contract.defaults import AUDIO_START_TOKEN
from contract.fast import prefill_calls
from generate.fast_steps import prefill_inputs
from runtime.metrics import compare

from .cases import SHORT_TEXT
from .records import Recorder, stop_agreement, worst_of


@dataclass
class Sequence:
    """Positions 0..n-1: text rows (scaled embeddings), then prompt patches and their embeddings."""

    text: np.ndarray         # [n_text, H] (text tokens and the audio-start token)
    patches: np.ndarray      # [n_audio, patch, feat_dim]
    patch_embeds: np.ndarray  # [n_audio, H]

    @property
    def length(self) -> int:
        return self.text.shape[0] + self.patches.shape[0]

    def embed(self, position: int) -> np.ndarray:
        n_text = self.text.shape[0]
        return (self.text[position] if position < n_text else self.patch_embeds[position - n_text])[None]

    def is_audio(self, position: int) -> bool:
        return position >= self.text.shape[0]

    def embeds(self) -> np.ndarray:
        return np.concatenate([self.text, self.patch_embeds])


def build_sequence(ref, text: str, prompt: np.ndarray, prompt_embeds: np.ndarray, length: int,
                   max_tokens: int) -> Sequence:
    """`text` (at most `max_tokens` tokens), the audio-start token, then the prompt's patches forwards and
    backwards: `length` rows."""
    tokens = ref.tokens(text)[:max_tokens] + [AUDIO_START_TOKEN]
    order = np.resize(np.concatenate([np.arange(len(prompt)), np.arange(len(prompt))[::-1]]), length - len(tokens))
    return Sequence(ref.embed_tokens(tokens), prompt[order], prompt_embeds[order])


def prefill_rows(chunk: int) -> tuple[int, ...]:
    """New rows per prefill call to validate: a whole chunk, an odd number that splits chunks unevenly, one."""
    return tuple(dict.fromkeys((chunk, max(1, chunk // 2 - 1) | 1, 1)))


class _Run:
    """One package (one precision) following the reference through prefills and step rollouts."""

    def __init__(self, spec, precision: str, models: dict, ref, fsq, recorder: Recorder, max_context: int):
        self.spec, self.precision, self.models, self.ref, self.fsq = spec, precision, models, ref, fsq
        self.recorder, self.max_context = recorder, max_context
        self.margin = recorder.gates.fsq_margin.get(precision, 0.1)
        self.steps = ref.lm_steps(max_context)
        self.names = [t.name for t in spec.states]
        self.prefill_stops: list = []   # (package, reference) stop logits [calls, 2] of each prefill

    def compare_prefill_stops(self) -> None:
        """The stop logits at the end of every prefill call, all prefills as one series, as the step rollouts
        and the published layout compare theirs: one call's two logits give a correlation of +-1 (a sign
        test), and a 64-row prefill of 99 positions has only two calls."""
        actual, expected = (np.concatenate(side) for side in zip(*self.prefill_stops))
        self.recorder.add(self.spec.name, self.precision, "prefill: stop_logit",
                          f"{len(self.prefill_stops)} prefills, {len(actual)} calls", actual, expected)

    # ---------------------------------------------------------------- comparisons
    def _add(self, output, case, actual, expected, position, **kwargs) -> dict:
        return self.recorder.add(self.spec.name, self.precision, output, case,
                                 np.asarray(actual).reshape(np.shape(expected)), expected, step=position, **kwargs)

    def _reference_caches(self) -> dict:
        """name -> the reference's cache under that state's name [1, kv_heads, max_context, D]."""
        caches = {}
        for group in self.spec.state_caches:
            for name, cache in zip(group.input_names(), self.steps.lm_caches(group.lm, group)):
                caches[name] = cache[:, :, :self.max_context].numpy()
        return caches

    def _compare_states(self, function: str, case: str, state, end: int, position: int) -> str | None:
        """The states' slots 0..end-1 vs the reference (one record: the worst state); slots from `end` on
        must be zero. Returns where a slot beyond was written, or None."""
        reference, metrics, tail = self._reference_caches(), [], None
        for name in self.names:
            actual = state.read(name).astype(np.float32)
            metrics.append(compare(actual[:, :, :end], reference[name][:, :, :end]))
            if tail is None and end < actual.shape[2] and np.abs(actual[:, :, end:]).max() > 0:
                tail = f"{name} holds {np.abs(actual[:, :, end:]).max():.3g} beyond position {end - 1} ({case})"
        worst = int(np.argmax([m["rel_l2"] - m["corr"] for m in metrics]))
        self.recorder.add(self.spec.name, self.precision, f"{function}: states", case, None, None,
                          step=position, detail=self.names[worst], metrics=worst_of(metrics))
        return tail

    def _follow(self, function: str, case: str, out_hidden, position: int, sequence: Sequence) -> np.ndarray:
        """The reference at `position`, following the package's FSQ codes at boundaries; returns the
        LM hidden it conditions on and records `lm_hidden` (and its raw comparison, not gated)."""
        embed = sequence.embed(position)
        raw = np.asarray(self.steps_hidden[position], np.float32).reshape(1, -1)
        if sequence.is_audio(position):
            expected, taken = self.fsq.expected(raw, out_hidden.reshape(1, -1), self.margin)
            self._add(f"{function}: lm_hidden", case, out_hidden, expected, position,
                      detail=f"{taken} boundary codes" if taken else None)
            self._add(f"{function}: lm_hidden vs torch (FSQ flips, not gated)", case, out_hidden,
                      self.steps.fsq(raw), position, gated=False)
            residual_in = expected + embed
        else:
            expected = raw
            self._add(f"{function}: lm_hidden", case, out_hidden, expected, position)
            residual_in = expected
        self.residual_hidden[position] = self.steps.residual(residual_in, position)
        return expected.astype(np.float32)

    # ---------------------------------------------------------------- prefill
    def prefill(self, sequence: Sequence, total: int, rows: int, chunk: int) -> dict:
        """One prefill of positions 0..total-1 of `sequence` at `rows` new rows per call; returns the final
        states (slots 0..total-1)."""
        case, model = f"prefill, {rows} rows/call", self.models["prefill"]
        self.steps.reset()
        self.steps_hidden = dict(enumerate(self.steps.base_prefill(sequence.embeds()[:total])))  # voxcpm's
        self.residual_hidden: dict = {}
        state, done, tail = model.new_state(), 0, None
        stops, expected_stops = [], []
        spec = self.spec.function("prefill")
        for start, count in prefill_calls(total, chunk, self.max_context, rows):
            inputs = prefill_inputs(spec, sequence.text, sequence.patches, start, count)
            out = model.predict(inputs, state=state)
            hidden = None
            for row in range(count):
                position = start + row
                if position >= done:
                    hidden = self._follow("prefill", case, out["lm_hidden"][0, row], position, sequence)
            done = start + count
            mu, stop = self.steps.heads(hidden, self.residual_hidden[done - 1])
            self._add("prefill: mu", case, out["mu"], mu, done - 1)
            stops.append(np.asarray(out["stop_logit"], np.float32).reshape(-1))
            expected_stops.append(np.asarray(stop, np.float32).reshape(-1))
            tail = tail or self._compare_states("prefill", case, state, done, done - 1)
        self.prefill_stops.append((np.stack(stops), np.stack(expected_stops)))
        self.recorder.check(self.spec.name, self.precision, f"state slots beyond the last position stay zero "
                                                            f"({case})", tail is None, tail or "")
        return {name: state.read(name)[:, :, :total].astype(np.float32) for name in self.names}

    # ---------------------------------------------------------------- step
    def rollout(self, sequence: Sequence, start: int, steps: int, label: str) -> None:
        """voxcpm's prefill of positions 0..start-1, its caches written into a fresh state, then `steps`
        patches through `step` (positions start..start+steps-1 of `sequence`, all audio)."""
        model = self.models["step"]
        self.steps.reset()
        if start > 0:
            self.steps.prefill(sequence.embeds()[:start], np.arange(start) >= sequence.text.shape[0])
        state = model.new_state()
        for name, cache in self._reference_caches().items():
            state.write(name, cache)
        self.steps_hidden, self.residual_hidden = {}, {}
        stops, expected_stops, torch_stops, tail = [], [], [], None
        for position in range(start, start + steps):
            n_text = sequence.text.shape[0]
            patch = sequence.patches[position - n_text]
            inputs = {"feat": patch.reshape(self.spec.function("step").input("feat").shape).astype(np.float32),
                      "position": np.array([position], np.int32)}
            out = model.predict(inputs, state=state)
            self.steps_hidden[position] = self.steps.base(sequence.embed(position), position)
            lm_hidden = self._follow("step", label, out["lm_hidden"], position, sequence)
            mu, stop = self.steps.heads(lm_hidden, self.residual_hidden[position])
            self._add("step: mu", label, out["mu"], mu, position)
            stops.append(out["stop_logit"].reshape(-1))
            expected_stops.append(stop.reshape(-1))
            torch_stops.append(self.fsq.stop_logit(self.steps.fsq(self.steps_hidden[position])).reshape(-1))
            tail = tail or self._compare_states("step", label, state, position + 1, position)
        self._stops(label, np.stack(stops), np.stack(expected_stops), np.stack(torch_stops))
        self.recorder.check(self.spec.name, self.precision, f"state slots beyond the position stay zero ({label})",
                            tail is None, tail or "")

    def _stops(self, label: str, actual, expected, torch_stops) -> None:
        self.recorder.add(self.spec.name, self.precision, "step: stop_logit", label, actual, expected)
        margin = self.recorder.gates.stop_margin
        agreement = stop_agreement(actual, torch_stops, margin)
        self.recorder.check(self.spec.name, self.precision, f"stop decisions agree ({label})",
                            agreement["decisive_agreement"] == 1.0,
                            f"{agreement['agreement']:.3f} of {len(actual)} steps agree; "
                            f"{agreement['decisive_agreement']:.3f} of the {agreement['decisive_steps']} steps "
                            f"where torch's margin >= {margin}")


def plan_step_rollouts(steps: int, prefill_length: int, max_context: int) -> list[tuple[int, str]]:
    """(start, label): right after a short prefill, and ending at the last position of the context."""
    steps = min(steps, max_context - prefill_length)
    rollouts = [(prefill_length, f"step after a {prefill_length}-position prefill")]
    end_start = max_context - steps
    if end_start > prefill_length + steps:
        rollouts.append((end_start, f"step to the end of the context (from {end_start})"))
    return rollouts


def run_state_rollouts(ref, context, models: list, recorder: Recorder, max_context: int, steps: int,
                       progress: bool = True) -> dict:
    """models: [(the stateful component's spec, precision, {function: runtime model})]. Returns notes."""
    from .references import FSQReference

    fsq = FSQReference(ref.model)
    spec = models[0][0]
    chunk = spec.function("prefill").input("text_embeds").shape[1]
    length = min(max_context, chunk + chunk // 2 + 3)              # more than one chunk, not a whole number
    rows = prefill_rows(chunk)
    rollouts = plan_step_rollouts(steps, length, max_context)
    steps = min(steps, max_context - length)

    def sequence(start: int) -> Sequence:   # the short text (up to a third of the prefill), audio from `start` on
        return build_sequence(ref, SHORT_TEXT, context.prompt, context.prompt_embeds, start + steps,
                              min(length // 3, start - 1))

    work = len(models) * (len(rows) + steps * len(rollouts))
    bar = tqdm(total=work, desc=f"{'LM state rollouts':<18}", unit="run", disable=not progress, leave=True)
    for spec, precision, functions in models:
        run = _Run(spec, precision, functions, ref, fsq, recorder, max_context)
        finals = {}
        for r in rows:
            finals[r] = run.prefill(sequence(length), length, r, chunk)
            bar.update()
        run.compare_prefill_stops()
        one = finals[1]
        for r in rows[:-1]:
            metrics = [compare(finals[r][name], one[name]) for name in run.names]
            recorder.add(spec.name, precision, "prefill: chunked vs one position per call", f"{r} rows/call vs 1",
                         None, None, metrics=worst_of(metrics))
        for start, label in rollouts:
            run.rollout(sequence(start), start, steps, label)
            bar.update(steps)
    bar.close()
    return {"LM state rollouts": f"prefill of {length} positions (chunk {chunk}) at {', '.join(map(str, rows))} "
                                 f"new rows per call; " + "; ".join(f"{label}: {steps} steps" for _, label in rollouts)}
