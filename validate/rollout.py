"""Teacher-forced LM rollouts: converted base/residual steps vs voxcpm's own decode loop.

A rollout is a real prefill (text tokens x scale, the audio-start token, prompt patches of
the speech clip through feat_encoder + enc_to_lm_proj) continued with more speech patches. The
torch reference prefills positions 0..start-1 as voxcpm does (full forward, `fill_caches`), then
steps with its own StaticKVCache; the converted step joins at `start` with the reference's caches (fp16-rounded by the runtime) and from then on is fed
its OWN returned caches. Inputs stay teacher-forced (the residual step gets torch's base
output), so an error can compound only through the caches, which is what must be proven.
At every step every output and every returned cache is compared (slots 0..position), and the
slots beyond `position` must still be exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from contract.defaults import AUDIO_START_TOKEN
from runtime.metrics import compare

from .cases import LONG_TEXT, SHORT_TEXT
from .records import Recorder, stop_agreement, worst_of

LONG_START = 300


@dataclass
class Rollout:
    label: str
    embeds: np.ndarray      # [n, H] base LM inputs, one per position
    is_audio: np.ndarray    # [n] bool
    start: int              # first position the converted step runs
    steps: int

    @property
    def end(self) -> int:
        return self.start + self.steps


def _audio_tail(prompt_embeds: np.ndarray, count: int) -> np.ndarray:
    """The prompt's patch embeddings, then the same patches backwards and so on, `count` rows."""
    cycle = np.concatenate([prompt_embeds, prompt_embeds[::-1]])
    return np.resize(cycle, (max(count, 0), prompt_embeds.shape[1])) if count > 0 else cycle[:0]


def _sequence(ref, text_tokens: list[int], prompt_embeds: np.ndarray, length: int):
    tokens = text_tokens + [AUDIO_START_TOKEN]
    text = ref.embed_tokens(tokens)
    audio = _audio_tail(prompt_embeds, length - len(tokens))
    embeds = np.concatenate([text, audio])[:length]
    is_audio = np.arange(length) >= len(tokens)
    return embeds.astype(np.float32), is_audio


def plan_rollouts(ref, prompt_embeds: np.ndarray, steps: int, max_context: int) -> list[Rollout]:
    """A short prefill compared from position 0, and a long one compared from ~300."""
    steps = min(steps, max_context)
    short_tokens = ref.tokens(SHORT_TEXT)
    embeds, is_audio = _sequence(ref, short_tokens, prompt_embeds, steps)
    rollouts = [Rollout(f"short prefill ({len(short_tokens) + 1} text + {len(prompt_embeds)} prompt)",
                        embeds, is_audio, 0, steps)]
    start = min(LONG_START, max_context - steps)
    if start > steps:  # a second start position only if it is really different
        long_tokens = ref.tokens(LONG_TEXT)
        while len(long_tokens) < start + 2:
            long_tokens = long_tokens + long_tokens
        long_tokens = long_tokens[:start + 2]  # text, then audio-start and speech, inside the compared steps
        embeds, is_audio = _sequence(ref, long_tokens, prompt_embeds, start + steps)
        rollouts.append(Rollout(f"long prefill from {start}", embeds, is_audio, start, steps))
    return rollouts


@dataclass
class RolloutReference:
    """voxcpm's side of one rollout, recorded before any package runs: per compared position its inputs
    and outputs by the converted interface's names; per LM step its caches when the converted step
    joins (before it writes `start`, under the step's input names) and after the last position. A
    static cache writes slot p at position p only, so slots 0..p of the final caches are the caches
    at position p."""

    rollout: Rollout
    steps: list[dict]                        # position - start -> {component: {name: array}}
    initial: dict[str, list[np.ndarray]]     # component -> [1, heads, max_context, D] in CacheSpec.slots() order
    final: dict[str, list[np.ndarray]]       # the same, after the last position


def _cache_arrays(ref_steps, spec, max_context: int) -> list[np.ndarray]:
    """The reference's caches cut to the package's context (voxcpm's own are as long as its config
    allows: 548 MiB for the two full-size rollouts uncut)."""
    return [cache[:, :, :max_context].numpy().copy() for cache in ref_steps.caches(spec)]


def record_rollouts(ref, rollouts: list[Rollout], specs: list, max_context: int,
                    progress: bool = True) -> list[RolloutReference]:
    """voxcpm's own decode loop through every rollout: what the converted steps are compared with."""
    ref_steps = ref.lm_steps(max_context)
    bar = tqdm(total=sum(r.end for r in rollouts), desc=f"{'LM rollouts (torch)':<18}", unit="pos",
               disable=not progress, leave=True)
    recorded = []
    for rollout in rollouts:
        ref_steps.reset()
        if rollout.start > 0:  # voxcpm's own prefill up to the first compared position
            ref_steps.prefill(rollout.embeds[:rollout.start], rollout.is_audio[:rollout.start])
            bar.update(rollout.start)
        initial = {spec.name: _cache_arrays(ref_steps, spec, max_context) for spec in specs}
        steps = []
        for position in range(rollout.start, rollout.end):
            steps.append(ref_steps.step(rollout.embeds[position], position, bool(rollout.is_audio[position])))
            bar.update()
        recorded.append(RolloutReference(rollout, steps, initial,
                                         {spec.name: _cache_arrays(ref_steps, spec, max_context) for spec in specs}))
    bar.close()
    return recorded


def compare_caches(out: dict, expected_caches: list, spec, position: int) -> tuple[dict, str, float, str]:
    """(worst metrics over caches, worst cache name, largest value beyond position, where); `expected_caches`
    in CacheSpec.slots() order, valid at least up to `position`."""
    metrics, names, tail, tail_at = [], [], 0.0, ""
    for (kind, i), expected in zip(spec.caches.slots(), expected_caches):
        name = spec.caches.output_name(kind, i)
        actual = out[name]
        metrics.append(compare(actual[:, :, :position + 1], np.asarray(expected[:, :, :position + 1])))
        names.append(name)
        beyond = float(np.abs(actual[:, :, position + 1:]).max()) if actual.shape[2] > position + 1 else 0.0
        if beyond > tail:
            tail, tail_at = beyond, name
    worst = int(np.argmax([m["rel_l2"] - m["corr"] for m in metrics]))
    return worst_of(metrics), names[worst], tail, tail_at


class _Follower:
    """One converted LM step package following the reference through a rollout."""

    def __init__(self, spec, precision: str, model, recorder: Recorder, rollout: Rollout, fsq):
        self.spec, self.component = spec, spec.name
        self.precision, self.model, self.recorder = precision, model, recorder
        self.rollout, self.fsq, self.caches = rollout, fsq, None
        self.stops, self.torch_stops, self.expected_stops = [], [], []
        self.tail_failure = None

    def seed(self, initial: list) -> None:
        """Join the rollout with the reference's caches (before it writes the current position)."""
        self.caches = {self.spec.caches.input_name(kind, i): cache.copy()
                       for (kind, i), cache in zip(self.spec.caches.slots(), initial)}

    def _add(self, output, actual, expected, position, **kwargs) -> dict:
        return self.recorder.add(self.component, self.precision, output, self.rollout.label,
                                 actual.reshape(expected.shape), expected, step=position, **kwargs)

    def _base_outputs(self, out: dict, reference: dict, position: int) -> list[dict]:
        """lm_hidden vs torch; lm_hidden_fsq and stop_logit given the converted hidden (FSQReference)."""
        hidden, fsq = out["lm_hidden"].reshape(1, -1), out["lm_hidden_fsq"].reshape(1, -1)
        margin = self.recorder.gates.fsq_margin.get(self.precision, 0.1)
        expected_fsq, taken = self.fsq.expected(hidden, fsq, margin)
        records = [self._add("lm_hidden", hidden, reference["lm_hidden"], position),
                   self._add("lm_hidden_fsq", fsq, expected_fsq, position,
                             detail=f"{taken} boundary codes" if taken else None),
                   self._add("lm_hidden_fsq vs torch (FSQ flips, not gated)", fsq, reference["lm_hidden_fsq"],
                             position, gated=False)]
        self.stops.append(out["stop_logit"].reshape(-1))
        self.torch_stops.append(reference["stop_logit"].reshape(-1))
        self.expected_stops.append(self.fsq.stop_logit(fsq).reshape(-1))
        return records

    def step(self, position: int, reference: dict, expected_caches: list) -> None:
        spec = self.spec
        inputs = {spec.embed_input: reference[spec.embed_input],
                  spec.position_input: np.array([position], np.int32), **self.caches}
        out = self.model.predict(inputs)
        if spec.has_output("stop_logit"):  # the base LM: FSQ and the stop head on top of its hidden
            records = self._base_outputs(out, reference, position)
        else:
            records = [self._add(name, out[name], reference[name], position) for name in spec.head_outputs()]
        worst, which, tail, tail_at = compare_caches(out, expected_caches, spec, position)
        records.append(self.recorder.add(self.component, self.precision, "caches", self.rollout.label, None, None,
                                         step=position, detail=which, metrics=worst))
        if tail > 0 and self.tail_failure is None:
            self.tail_failure = f"{tail_at} holds {tail:.3g} beyond position {position} ({self.rollout.label})"
        self.recorder.witness(self.component, self.precision, inputs, records)
        self.caches = {name: out[spec.caches.output_for(name)] for name in spec.caches.input_names()}

    def finish(self, margin: float) -> None:
        """Stop logits over the whole rollout (two numbers a step), and the stop decisions."""
        label = self.rollout.label
        if self.stops:
            actual, torch_stops = np.stack(self.stops), np.stack(self.torch_stops)
            self.recorder.add(self.component, self.precision, "stop_logit", label, actual, np.stack(self.expected_stops))
            self.recorder.add(self.component, self.precision, "stop_logit vs torch (not gated)", label, actual,
                              torch_stops, gated=False)
            agreement = stop_agreement(actual, torch_stops, margin)
            self.recorder.check(self.component, self.precision, f"stop decisions agree ({label})",
                                agreement["decisive_agreement"] == 1.0,
                                f"{agreement['agreement']:.3f} of {len(actual)} steps agree; "
                                f"{agreement['decisive_agreement']:.3f} of the {agreement['decisive_steps']} "
                                f"steps where torch's margin >= {margin}")
        self.recorder.check(self.component, self.precision, f"cache slots beyond position stay zero ({label})",
                            self.tail_failure is None, self.tail_failure or "")


def run_rollouts(references: list[RolloutReference], fsq, models: list, recorder: Recorder,
                 progress: bool = True) -> None:
    """models: [(LM step spec, precision, runtime model)], each following the recorded reference;
    fsq: the FSQReference of the same model."""
    bar = tqdm(total=sum(r.rollout.steps for r in references), desc=f"{'LM rollouts':<18}", unit="pos",
               disable=not progress, leave=True)
    for reference in references:
        rollout = reference.rollout
        followers = [_Follower(spec, p, m, recorder, rollout, fsq) for spec, p, m in models]
        for follower in followers:
            follower.seed(reference.initial[follower.component])
        for position, outputs in zip(range(rollout.start, rollout.end), reference.steps):
            for follower in followers:
                follower.step(position, outputs[follower.component], reference.final[follower.component])
            bar.update()
        for follower in followers:
            follower.finish(recorder.gates.stop_margin)
    bar.close()
