"""What a user asks of the sampler (SampleSettings) and what it gives back (Poem)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.options import Options, option

FORMS = ("auto", "free", "5", "7")
MAX_POEMS = 256
# 格律 while sampling, loosest first (core.generation.prosody_modes says what each does; docs/GELV.md §7)
PROSODY = ("none", "soft-rhyme", "rhyme", "soft", "gelv")
RHYMING = ("soft-rhyme", "rhyme", "soft", "gelv")  # the modes a chosen rhyme group (--rhyme) applies to


@dataclass
class SampleSettings(Options):
    start: str = option("", "the first characters of the poem (normalised like the corpus)", label="Seed")
    temperature: float = option(
        0.9, "softmax(logits / τ): low is safe and repetitive, high is daring (≤ 0.01: greedy)",
        low=0, high=100, label="Temp.", aliases=("-t",),
    )  # fmt: skip
    top_k: int = option(0, "sample among the k likeliest characters only (0: off)", low=0, label="Top-k")
    top_p: float = option(
        1.0, "sample among the likeliest characters that make up this much probability (1: off)",
        low=0, high=1, low_open=True, label="Top-p",
    )  # fmt: skip
    repetition_penalty: float = option(
        1.0, "divide the logits of characters already in the poem by this (1: off)", low=1, high=100,
        label="Penalty",
    )  # fmt: skip
    form: str = option(
        "auto", "auto: 5 or 7 characters a line, 4 or 8 lines, the model's choice; 5 / 7: 绝句 or 律诗; "
        "free: its own lines", choices=FORMS, label="Form",
    )  # fmt: skip
    lines: int | None = option(
        None,
        "with form 5 or 7: 4 lines (绝句) or 8 (律诗)",
        choices=(4, 8),
        none="4 with form 5|7",
        label="Lines",
    )
    acrostic: str = option("", "藏头诗: line k starts with the k-th character", label="Acrostic")
    num: int = option(
        1, "how many poems to write at once", low=1, high=MAX_POEMS, label="Poems", aliases=("-n",)
    )
    seed: int | None = option(
        None, "a number makes the poems repeatable", low=0, high=2**63 - 1, none="random", label="RNG seed"
    )
    max_repeats: int = option(
        3, "a character at most this many times per poem, and no line twice (0: neither limit)", low=0,
        high=100,
    )  # fmt: skip
    max_chars: int = option(120, "of a free-form poem, punctuation included", low=16, high=1000)
    unk: str = option(
        "error", "seed characters the model does not know: refuse (error) or drop with a warning (skip)",
        choices=("error", "skip"), label="Unknown",
    )  # fmt: skip
    prosody: str = option(
        "rhyme", "格律 of regular lines. none: the form only; rhyme: even lines end in the 平水韵 group "
        "the first rhyme sets (masked); soft-rhyme: the same, reweighted; soft: rhyme masked, tones of "
        "the regulated patterns still open reweighted; gelv: one regulated pattern and rhyme, masked",
        choices=PROSODY, label="Prosody",
    )  # fmt: skip
    prosody_weight: float = option(
        3.0, "soft modes: nats taken off the log-probability of a character that breaks the rhyme "
        "(soft-rhyme) or fits no regulated pattern still open (soft)", low=0, high=100, label="Weight",
    )  # fmt: skip
    gelv: bool = option(
        False, "格律: tones follow a regulated pattern (平仄), rhymes share a 平水韵 group; needs form 5 "
        "or 7 (the same as --prosody gelv)", label="格律",
    )  # fmt: skip
    rhyme: str | None = option(
        None, "with a rhyming prosody (or 格律): the 平水韵 group to rhyme in, e.g. 东 or 一东", none="any",
        label="Rhyme",
    )  # fmt: skip

    @property
    def mode(self) -> str:
        """The prosody mode in effect: `gelv` (the switch) is `--prosody gelv`."""
        return "gelv" if self.gelv else self.prosody

    @staticmethod
    def rhyme_applies(values: dict) -> bool:
        """Whether a rhyme group (--rhyme) has lines to act on: 格律, or a rhyming prosody mode with a form
        whose lines rhyme (auto, 5 or 7: free lines do not rhyme here)."""
        return bool(values.get("gelv")) or (
            values.get("prosody", "none") in RHYMING and values.get("form") != "free"
        )

    @classmethod
    def combination_problems(cls, values: dict) -> dict[str, str]:
        if values.get("lines") is not None and values.get("form") not in ("5", "7"):
            return {"lines": "goes with form 5 or 7"}
        regular = values.get("form") in ("5", "7")
        if values.get("gelv") and not regular:
            return {"gelv": "needs a fixed form: form 5 or 7, with 4 or 8 lines"}
        prosody = values.get("prosody", "none")
        if values.get("gelv") and prosody not in ("gelv", cls.specs()["prosody"].default):
            return {"prosody": f"--gelv is --prosody gelv: it does not go with --prosody {prosody}"}
        if prosody == "gelv" and not regular:
            return {"prosody": "gelv needs a fixed form: form 5 or 7, with 4 or 8 lines"}
        if values.get("rhyme") and not cls.rhyme_applies(values):
            if prosody not in RHYMING:
                return {"rhyme": "goes with 格律 (gelv) or a rhyming prosody: " + ", ".join(RHYMING)}
            return {"rhyme": "goes with a regular form (auto, 5 or 7): free lines do not rhyme here"}
        return {}


@dataclass
class Poem:
    text: str
    logprobs: list[float] = field(default_factory=list)  # model log-probability of each generated character
    pattern: str | None = None  # with gelv: the tone pattern followed
    conflicts: list[dict] = field(default_factory=list)  # with gelv: seed/acrostic characters that break it

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    def to_dict(self) -> dict:
        out = {
            "text": self.text,
            "logprobs": [round(x, 4) for x in self.logprobs],
            "mean_logprob": round(self.mean_logprob, 4),
        }
        if self.pattern is not None:
            out.update(pattern=self.pattern, conflicts=self.conflicts)
        return out
