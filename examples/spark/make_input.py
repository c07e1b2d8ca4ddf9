"""Write a deterministic text file to count words in: `make_input.py LINES OUTPUT [--seed N]`.

The same LINES and seed always give the same file (Python's own random generator, seeded),
so a word count of it has one right answer. Words come from a small vocabulary with
Zipf-like frequencies, 8 to 15 words a line. Standard library only."""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "spark node batch slurm job cluster worker master executor driver shuffle partition"
).split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", type=int, help="number of lines")
    parser.add_argument("output", type=Path, help="the text file to write (parents created)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    args = parser.parse_args()
    if args.lines < 0:
        parser.error("lines must be >= 0")
    rng = random.Random(args.seed)
    weights = [1 / rank for rank in range(1, len(VOCABULARY) + 1)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for _ in range(args.lines):
            words = rng.choices(VOCABULARY, weights, k=rng.randint(8, 15))
            out.write(" ".join(words) + "\n")
    os.replace(tmp, args.output)  # a rerun never leaves a half-written input behind
    print(f"wrote {args.lines} lines to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
