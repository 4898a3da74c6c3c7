"""What a user asks of the sampler (SampleSettings) and what it gives back (Poem)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SampleSettings:
    start: str = ""  # seed characters (normalised like the corpus)
    temperature: float = 0.8  # softmax(logits / τ); τ ≤ 0.01 is greedy
    top_k: int = 0  # 0: off
    top_p: float = 0.9  # nucleus; 1.0: off
    repetition_penalty: float = 1.1  # >1 discourages characters already in the poem; 1.0: off
    form: str = "auto"  # "auto", "free", "5" or "7"
    lines: int | None = None  # 4 or 8 with a numeric form (default 4); auto: the model's choice
    acrostic: str = ""  # 藏头诗: line k starts with the k-th character
    num: int = 1
    seed: int | None = None
    max_repeats: int = 3  # a character at most this many times per poem (0: no limit)
    max_chars: int = 120  # of a free-form poem, punctuation included
    unk: str = "error"  # "error": unknown seed characters are refused; "skip": dropped with a warning
    gelv: bool = False  # 格律: tones follow a regulated pattern, rhyme positions share a 平水韵 group
    rhyme: str | None = None  # with gelv: the rhyme group (e.g. "东"); None: the first rhyme fixes it

    def to_dict(self) -> dict:
        return asdict(self)


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
