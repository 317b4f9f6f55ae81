"""Long fuzz run of the parser and solver: random tokens, random characters, mutations.

Run: .venv/bin/python benchmarks/bench_fuzz.py [--count 100000] [--seed 0]

Each input is checked with cnngen.fuzzing.check_phrase on an 8x8 and a 32x32 input; the script
counts how many were rejected by the parser, rejected by the solver and accepted, and stops at
the first input that raises anything else (printing it). ANTLR output on stderr is counted too.
"""

import argparse
import collections
import contextlib
import io
import random
import time

from cnngen.fuzzing import VOCABULARY, check_phrase, mutate
from cnngen.sampling import sample_architecture, sample_resolved


def make_input(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randrange(30)))
    if kind == 1:
        return "".join(chr(rng.randrange(9, 127)) for _ in range(rng.randrange(80)))
    seed = rng.randrange(100_000)
    phrase = sample_resolved(seed, (28, 28, 1), 10).to_phrase() if rng.random() < 0.5 else sample_architecture(seed).to_phrase()
    for _ in range(rng.randrange(1, 4)):
        phrase = mutate(phrase, rng)
    return phrase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: collections.Counter = collections.Counter()
    stderr_outputs = 0
    start = time.perf_counter()
    for index in range(args.count):
        phrase = make_input(rng)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                for shape in ((8, 8, 1), (32, 32, 3)):
                    outcomes[(shape[0], check_phrase(phrase, shape))] += 1
            except Exception:
                print(f"input {index} raised an unexpected exception: {phrase!r}")
                raise
        stderr_outputs += bool(stderr.getvalue())
    elapsed = time.perf_counter() - start
    print(f"inputs tried: {args.count} in {elapsed:.0f} s (seed {args.seed})")
    for (size, outcome), count in sorted(outcomes.items()):
        print(f"  {size}x{size}: {outcome:<11} {count}")
    print(f"inputs that printed to stderr: {stderr_outputs}")
    print("unexpected exceptions: 0")


if __name__ == "__main__":
    main()
