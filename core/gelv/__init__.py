"""格律: 平仄 and 平水韵 of Tang regulated verse (近体诗): data, checker, masks for constrained sampling.

    from core.gelv import Gelv
    gelv = Gelv.load()                       # reads core/gelv/tones.json once per process
    result = gelv.check("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    result.passed, result.pattern.name, result.tones, result.rhyme_ok, result.faults
    gelv.tones("看")                         # frozenset({'平', '仄'})
    gelv.ping_groups("楼")                   # frozenset({'尤'})

See docs/GELV.md for the data, the rules and the sampler API (core.gelv.constrain).
"""

from core.gelv.checker import Fault, Gelv, GelvResult, LineResult, check, quality, read_regular_lines
from core.gelv.constrain import GelvConstraint, ToneMasks, patterns_for
from core.gelv.data import GelvError
from core.gelv.patterns import FORMS, Pattern, pattern_by_name, patterns

__all__ = [
    "FORMS",
    "Fault",
    "Gelv",
    "GelvConstraint",
    "GelvError",
    "GelvResult",
    "LineResult",
    "Pattern",
    "ToneMasks",
    "check",
    "pattern_by_name",
    "patterns",
    "patterns_for",
    "quality",
    "rates",
    "read_regular_lines",
]

rates = quality  # the name core.generation.quality.gelv_metrics imports
