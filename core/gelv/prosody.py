"""What the model may be told about each character of its vocabulary: the table behind PoetryLM's prosody
option (core.model.Prosody), built once from the vocabulary and the tone table, and stored in checkpoints.

One row per vocabulary id:

    columns 0-5    the token's kind, one-hot: content character, <bos>, <eos>/<pad>, a mark that ends a line
                   (，。？！；), other punctuation, <unk>
    column  6, 7   its tones: 平, 仄 (both for a character with two readings; neither when we have no data)
    columns 8-37   its 平水韵 平声 groups (东 冬 江 … 咸), a character with several readings in several

A rhyme of 近体诗 is a 平声 group, so those 30 groups are the rhyme classes; the 仄 groups would only
describe the few 仄-rhymed poems.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.corpus.lines import LINE_ENDS
from core.gelv.checker import Gelv
from core.gelv.patterns import PING, ZE

KINDS = ("content", "bos", "eos", "line_end", "punctuation", "unk")
CONTENT, BOS_KIND, EOS_KIND, LINE_END, PUNCTUATION, UNK_KIND = range(len(KINDS))
TONES = (PING, ZE)
SPECIAL_KINDS = {"<pad>": EOS_KIND, "<bos>": BOS_KIND, "<eos>": EOS_KIND, "<unk>": UNK_KIND}


def class_names(gelv: Gelv | None = None) -> tuple[str, ...]:
    """The names of the prosodic classes (the columns after the kinds): 平, 仄, then the 30 平 groups."""
    gelv = gelv or Gelv.load()
    return (*TONES, *gelv.table.ping_group_names)


def prosody_table(itos: Sequence[str], gelv: Gelv | None = None) -> np.ndarray:
    """float32 [V, len(KINDS) + 32]: kind one-hot, then tone and rhyme-group memberships (see above)."""
    from core.corpus.clean import is_hanzi

    gelv = gelv or Gelv.load()
    groups = {g: k for k, g in enumerate(gelv.table.ping_group_names)}
    width = len(KINDS) + len(TONES) + len(groups)
    table = np.zeros((len(itos), width), dtype=np.float32)
    for i, token in enumerate(itos):
        if token in SPECIAL_KINDS:
            table[i, SPECIAL_KINDS[token]] = 1
            continue
        if token in LINE_ENDS:
            table[i, LINE_END] = 1
            continue
        if not (len(token) == 1 and is_hanzi(token)):
            table[i, PUNCTUATION] = 1
            continue
        table[i, CONTENT] = 1
        for k, tone in enumerate(TONES):
            table[i, len(KINDS) + k] = tone in gelv.tones(token)
        for g in gelv.ping_groups(token):
            table[i, len(KINDS) + len(TONES) + groups[g]] = 1
    return table
