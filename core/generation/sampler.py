"""Writing poems with a trained model: `<bos>` + seed characters, then one character at a time.

Sampling is softmax(a/τ) (the assignment's temperature) with optional top-k, top-p and a repetition penalty,
and N poems are sampled together in one batch; core.generation.form keeps each poem in its shape, and the
prosody mode (core.generation.prosody_modes, core.gelv.constrain) its rhyme and tones. `generate_each`
samples poems of different starts and forms in one batch (core.generation.judge: 1,000 at once).
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F

from core.corpus import normalize_text
from core.corpus.lines import LINE_ENDS
from core.corpus.vocab import BOS, EOS, PAD, UNK
from core.errors import PoemError, SeedError
from core.generation.form import FREE_LINE_COST, FREE_MAX_LINE, PoemForm, free_min_lines
from core.generation.prosody_modes import VERSE_MODES, VerseMasks, VerseState
from core.generation.settings import Poem, SampleSettings
from core.model import resolve_precision

# what the poems of one batch share (core.generation.judge batches poems of different starts and forms)
_SHARED = ("temperature", "top_k", "top_p", "repetition_penalty", "prosody_weight")


class Sampler:
    """Samples poems from a PoetryLM with its vocabulary."""

    def __init__(self, model, vocab, device="cpu", script: str = "simplified", precision: str = "fp32"):
        """precision "bf16" (or "auto", where the hardware computes bf16 natively) samples with a bfloat16
        copy of the model: one character at a time, a poem's time goes to reading the weights from memory
        (27 MB in float32 at |V| 6,712, hidden 512, more than the CPU's cache keeps between steps), and
        half of that is about twice as fast (README, Benchmarks). Log-probabilities are then good
        to bf16's 2-3 digits; perplexity (core.evaluate) is always float32. The caller's model is not
        touched, so "fp32", the default, suits a model that is still training."""
        model = model.to(device).eval()
        self.precision = resolve_precision(precision, torch.device(device))
        if self.precision == "bf16":
            model = copy.deepcopy(model).to(torch.bfloat16)
        self.model = model
        self.vocab = vocab
        self.device = torch.device(device)
        self.script = script
        self._masks = None  # core.gelv ToneMasks, built on first use
        self._verse_masks = None  # core.generation.prosody_modes VerseMasks, built on first use
        punct = set(LINE_ENDS) | set("、：“”‘’《》「」（）")
        content = torch.ones(len(vocab), dtype=torch.bool)
        for i, ch in enumerate(vocab.itos):
            if i in (PAD, BOS, EOS, UNK) or ch in punct:
                content[i] = False
        self.content = content
        for ch in "，。":
            if ch not in vocab.stoi:
                raise SeedError(f"this model's vocabulary lacks {ch!r}: it cannot write regular lines")

    @classmethod
    def from_checkpoint(cls, path, device="cpu", precision: str = "auto") -> Sampler:
        from core.runs.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path, map_location=device)
        script = ckpt.meta.get("corpus", {}).get("options", {}).get("script", "simplified")
        return cls(ckpt.build_model(device), ckpt.vocab, device=device, script=script, precision=precision)

    def _logits(self, inputs: torch.Tensor, state=None):
        """The last position's logits (float32, on the CPU) and the LSTM state."""
        logits, state = self.model(inputs, state=state)
        return logits[:, -1].float().cpu(), state

    # --- seeds -------------------------------------------------------------------------------------------

    def prepare_text(self, text: str, what: str, unk: str = "error") -> tuple[str, list[str]]:
        """Normalise like the corpus; unknown characters raise SeedError (or are dropped with a warning)."""
        norm = normalize_text(text or "", script=self.script)
        norm = "".join(ch for ch in norm if not ch.isspace())
        unknown = [ch for ch in norm if ch not in self.vocab.stoi]
        if not unknown:
            return norm, []
        if unk == "skip":
            kept = "".join(ch for ch in norm if ch in self.vocab.stoi)
            return kept, [
                f"{what}: dropped {''.join(dict.fromkeys(unknown))} (not in the model's vocabulary)"
            ]
        ch = unknown[0]
        hint = self._variant_hint(ch)
        raise SeedError(f"{what} character 「{ch}」 is not in this model's vocabulary{hint}")

    def _variant_hint(self, ch: str) -> str:
        for convert in _variant_converters():
            alt = convert(ch)
            if alt != ch and alt in self.vocab.stoi:
                return f"; did you mean 「{alt}」?"
        return " (try another character, or --unk skip)"

    def _prime(self, settings: SampleSettings, start_ids: list[int], pattern=None) -> PoemForm:
        """Run the seed through the shape rules, refusing a seed that cannot begin such a poem."""
        shape = PoemForm(settings, self.vocab.stoi)
        shape.itos = self.vocab.itos
        if pattern is not None:
            from core.gelv.constrain import GelvConstraint

            shape.gelv = GelvConstraint(self._tone_masks(), pattern, rhyme=settings.rhyme)
        elif settings.mode in VERSE_MODES and settings.form != "free":
            n = int(settings.form) if settings.form in ("5", "7") else None
            shape.verse = VerseState(
                self._verse(), settings.mode, settings.prosody_weight, n, rhyme=settings.rhyme
            )
        shape.priming = True
        for tok in start_ids:
            if not shape.allows(tok, self.content):
                raise SeedError(self._seed_refusal(settings, shape, tok))
            shape.advance(tok)
        shape.priming = False
        return shape

    def _seed_refusal(self, settings: SampleSettings, shape: PoemForm, tok: int) -> str:
        """Why the seed cannot go on at `tok`: the repetition limits (naming --max-repeats), or the form."""
        ch, where = self.vocab.itos[tok], f"(line {shape.lines_done + 1})"
        if tok in shape.banned():
            if shape.counts[tok] >= settings.max_repeats:
                return (
                    f"the seed has 「{ch}」 more than --max-repeats {settings.max_repeats} times {where}: "
                    "raise it, or 0 lifts the limit"
                )
            return (
                f"the seed repeats a line at 「{ch}」 {where}: no line twice with --max-repeats "
                f"{settings.max_repeats} (0 lifts the rule)"
            )
        form = f"{settings.form}×{settings.lines or 4}" if settings.form in ("5", "7") else settings.form
        kind, arg = shape.rule()
        if kind == "force" and arg != EOS:
            mark = self.vocab.itos[arg]
            why = ""
            if settings.form == "free" and len(shape.line) < FREE_MAX_LINE:
                why = f" to end within --max-chars {settings.max_chars}"
            return f"the seed has 「{ch}」 {where} where a poem of form {form} needs 「{mark}」{why}"
        return f"the seed cannot start a poem of form {form} at 「{ch}」 {where}"

    def _tone_masks(self):
        """Tone and rhyme masks over this vocabulary (built once, on first use of 格律)."""
        if self._masks is None:
            from core.gelv.constrain import ToneMasks

            self._masks = ToneMasks(self.vocab.itos)
        return self._masks

    def _verse(self) -> VerseMasks:
        if self._verse_masks is None:
            self._verse_masks = VerseMasks(self._tone_masks())
        return self._verse_masks

    def _patterns(self, settings: SampleSettings, generator: torch.Generator) -> list:
        """A tone pattern per poem, at random among those the seed and acrostic fit best."""
        from core.gelv.constrain import patterns_for

        gelv = self._tone_masks().gelv
        forced = {(0, i): ch for i, ch in enumerate(settings.start[: int(settings.form)])}
        forced.update({(k, 0): ch for k, ch in enumerate(settings.acrostic)})
        ranked = patterns_for(int(settings.form), settings.lines or 4, forced, gelv=gelv)
        fewest = _conflicts(ranked[0], forced, gelv)
        best = [p for p in ranked if _conflicts(p, forced, gelv) == fewest]
        return [best[i] for i in torch.randint(len(best), (settings.num,), generator=generator).tolist()]

    def check(self, settings: SampleSettings) -> tuple[SampleSettings, list[str]]:
        """Validate and normalise settings against this model (its vocabulary, the seed's fit to the form);
        returns them with any warnings."""
        settings.check()  # each value against its declaration (core.generation.settings)
        start, w1 = self.prepare_text(settings.start, "seed", settings.unk)
        acrostic, w2 = self.prepare_text(settings.acrostic, "acrostic", settings.unk)
        acrostic = "".join(ch for ch in acrostic if self.content[self.vocab.stoi[ch]])
        max_lines = settings.lines or (4 if settings.form in ("5", "7") else 8)
        if settings.form == "free":
            max_lines = 64
        if len(acrostic) > max_lines:
            raise SeedError(f"the acrostic has {len(acrostic)} characters but the poem has {max_lines} lines")
        if settings.form == "free":
            lines = free_min_lines(len(acrostic))
            if lines * FREE_LINE_COST > settings.max_chars:
                raise SeedError(
                    f"an acrostic of {len(acrostic)} characters needs {lines} free lines, at least "
                    f"{lines * FREE_LINE_COST} characters: raise --max-chars (now {settings.max_chars})"
                )
        if acrostic and start:
            first = start[0]
            if first != acrostic[0]:
                raise SeedError(f"the seed starts with 「{first}」 but the acrostic with 「{acrostic[0]}」")
        s = SampleSettings(**{**settings.to_dict(), "start": start, "acrostic": acrostic})
        if s.form in ("5", "7") and s.lines is None:
            s.lines = 4
        s.prosody = s.mode  # --gelv is --prosody gelv: both say so from here on
        s.gelv = s.prosody == "gelv"
        if s.rhyme:
            try:
                self._tone_masks().gelv.resolve_group(s.rhyme)
            except (KeyError, ValueError, PoemError) as exc:
                raise SeedError(
                    f"unknown rhyme group {s.rhyme!r}: name a 平水韵 平声 group, e.g. 东"
                ) from exc
        self._prime(s, [self.vocab.stoi[c] for c in start])
        return s, w1 + w2

    # --- sampling -----------------------------------------------------------------------------------------

    def _mask_row(self, shape: PoemForm) -> tuple[torch.Tensor | int, torch.Tensor | None]:
        """The next token: forced (an int), or the mask of allowed ones and the characters that lose the
        prosody weight (None: no character does)."""
        kind, arg = shape.rule()
        if kind == "force":
            return arg, None
        what, ends = arg
        mask = self.content.clone()
        penalty = None
        banned = shape.banned()
        if banned:
            mask[list(banned)] = False
        if shape.gelv is not None and not shape.gelv.done:
            mask &= torch.from_numpy(shape.gelv.allowed().copy())
        elif shape.verse is not None:
            want, penalty = shape.verse.next(shape.lines_done, len(shape.line))
            if want is not None and (mask & want).any():  # else: the form's rules win (all banned)
                mask &= want
        if what == "content_or_ends":
            mask[list(ends)] = True
        elif what == "eos_or_content":
            mask[EOS] = True
        return mask, penalty

    @torch.inference_mode()
    def generate(
        self, settings: SampleSettings, generator: torch.Generator | None = None, on_step=None
    ) -> list[Poem]:
        """Sample settings.num poems in one batch; `on_step(texts)` sees them grow (for live display)."""
        settings, _ = self.check(settings)
        if generator is None:
            generator = torch.Generator()
            if settings.seed is None:
                generator.seed()
            else:
                generator.manual_seed(settings.seed)
        patterns = self._patterns(settings, generator) if settings.gelv else [None] * settings.num
        return self._sample([settings] * settings.num, patterns, generator, on_step)

    @torch.inference_mode()
    def generate_each(self, each: list[SampleSettings], generator: torch.Generator) -> list[Poem]:
        """One poem for each of `each` (checked settings: starts of one length, the same sampling
        parameters; forms and starts may differ), all in one batch."""
        if not each:
            return []
        first = each[0]
        for s in each:
            if len(s.start) != len(first.start) or any(getattr(s, k) != getattr(first, k) for k in _SHARED):
                raise ValueError("generate_each: starts of one length and the same sampling parameters")
        patterns = [self._patterns(s, generator)[0] if s.gelv else None for s in each]
        return self._sample(each, patterns, generator)

    def _sample(self, each: list[SampleSettings], patterns: list, generator, on_step=None) -> list[Poem]:
        n = len(each)
        start_ids = [[self.vocab.stoi[c] for c in s.start] for s in each]
        shapes = [self._prime(s, ids, p) for s, ids, p in zip(each, start_ids, patterns, strict=True)]
        prefix = torch.tensor([[BOS, *ids] for ids in start_ids], device=self.device)
        logits, state = self._logits(prefix)
        out_ids: list[list[int]] = [list(ids) for ids in start_ids]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        for _ in range(max(s.max_chars for s in each) + 2):
            active = [i for i in range(n) if not shapes[i].done]
            if not active:
                break
            choice = self._choose(logits, shapes, out_ids, each[0], generator)
            model_logp = F.log_softmax(logits, dim=-1)
            for i in active:
                tok = choice[i]
                shapes[i].advance(tok)
                if tok != EOS:
                    out_ids[i].append(tok)
                    logprobs[i].append(float(model_logp[i, tok]))
            if on_step is not None:
                on_step([self.vocab.decode(ids) for ids in out_ids])
            if all(s.done for s in shapes):
                break
            feed = torch.tensor(
                [[c if not shapes[i].done else PAD] for i, c in enumerate(choice)], device=self.device
            )
            logits, state = self._logits(feed, state=state)
        poems = []
        for ids, lp, shape in zip(out_ids, logprobs, shapes, strict=True):
            poem = Poem(text=self.vocab.decode(ids), logprobs=lp)
            if shape.gelv is not None:
                poem.pattern = shape.gelv.pattern.name
                poem.conflicts = list(shape.gelv.conflicts)
            poems.append(poem)
        return poems

    def _choose(self, logits, shapes, out_ids, s: SampleSettings, generator) -> list[int]:
        n, v = logits.shape
        allowed = torch.zeros(n, v, dtype=torch.bool)
        penalised = None
        forced: dict[int, int] = {}
        for i, shape in enumerate(shapes):
            if shape.done:
                forced[i] = PAD
                continue
            m, penalty = self._mask_row(shape)
            if isinstance(m, int):
                forced[i] = m
                continue
            allowed[i] = m
            if penalty is not None:
                if penalised is None:
                    penalised = torch.zeros(n, v, dtype=torch.bool)
                penalised[i] = penalty
        # a broken model's NaN never wins, its +inf stays first among finite scores (see the fallback below)
        scores = torch.nan_to_num(logits.float(), nan=float("-inf"), posinf=1e4, neginf=float("-inf"))
        if s.repetition_penalty != 1.0:
            for i, ids in enumerate(out_ids):
                if ids:
                    used = torch.tensor(sorted(set(ids)))
                    vals = scores[i, used]
                    scores[i, used] = torch.where(
                        vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty
                    )
        if penalised is not None and s.prosody_weight > 0:  # soft prosody: before τ and truncation
            scores = scores - s.prosody_weight * penalised.float()
        scores = scores.masked_fill(~allowed, float("-inf"))
        dead = ~torch.isfinite(scores).any(dim=-1) & allowed.any(dim=-1)
        if bool(dead.any()):  # no finite score among the allowed tokens: choose among them uniformly
            scores[dead] = torch.zeros_like(scores[dead]).masked_fill(~allowed[dead], float("-inf"))
        if s.temperature <= 0.01:
            picks = scores.argmax(dim=-1)
        else:
            scores = scores / s.temperature
            if s.top_k > 0:
                kth = torch.topk(scores, min(s.top_k, v), dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            if s.top_p < 1.0:
                scores = _nucleus(scores, s.top_p)
            probs = scores.softmax(dim=-1)
            probs = torch.where(torch.isnan(probs), torch.zeros_like(probs), probs)
            rows_ok = probs.sum(dim=-1) > 0
            probs[~rows_ok, PAD] = 1.0  # rows that are forced or done; overwritten below
            picks = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        result = picks.tolist()
        for i, tok in forced.items():
            result[i] = tok
        return result


def _nucleus(scores: torch.Tensor, top_p: float, first: int = 256) -> torch.Tensor:
    """Top-p: per row, keep the smallest set of likeliest entries whose probability reaches top_p.

    The set almost always lies within the first few hundred of thousands of entries, so those are found
    with topk; a full sort (a third of a poem's sampling time at |V| 6,712) runs only when they fall short.
    """
    probs = scores.softmax(dim=-1)
    v = scores.shape[1]
    k = min(first, v)
    while True:
        top, order = probs.topk(k, dim=-1)  # descending
        cum = top.cumsum(dim=-1)
        reached = (cum[:, -1] > top_p) | torch.isnan(cum[:, -1])  # NaN: a row with nothing allowed
        if k == v or bool(reached.all()):
            break
        k = v
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, order, cum - top <= top_p)
    return scores.masked_fill(~keep, float("-inf"))


@functools.cache
def _variant_converters() -> list:
    """OpenCC conversions that may turn an unknown character into a known one (built once, ~15 ms each)."""
    import opencc

    return [opencc.OpenCC(config).convert for config in ("t2s", "s2t", "tw2s", "hk2s", "jp2t")]


def _conflicts(pattern, forced: dict, gelv) -> int:
    """How many imposed characters (seed, acrostic) do not have the tone the pattern wants there."""
    return sum(
        1
        for (line, col), ch in forced.items()
        if (tone := pattern.required_tone(line, col)) is not None and tone not in gelv.tones(ch)
    )
