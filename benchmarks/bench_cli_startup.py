"""Start-up time of the light CLI commands against a bare Python start, and their imports.

Run: .venv/bin/python benchmarks/bench_cli_startup.py [--repeat 5]

Prints the median wall time of `cnngen check`, `sample` and `describe` next to `python -c pass`
in the same environment, and fails if any of them imported TensorFlow, Keras or PyTorch.
"""

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "cnngen check": [sys.executable, "-m", "cnngen.cli", "check", "input conv max_pooling flatten dense output"],
    "cnngen sample (10)": [sys.executable, "-m", "cnngen.cli", "sample", "--count", "10", "--dataset", "cifar10"],
    "cnngen describe": [sys.executable, "-m", "cnngen.cli", "describe", "input conv max_pooling flatten dense output", "--dataset", "cifar10", "--json"],
}
PROBE = (
    "import sys, runpy; sys.argv = ['cnngen', {args}]; "
    "import cnngen.cli as c; c.main(sys.argv[1:]); "
    "print('HEAVY', [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'torch')], file=sys.stderr)"
)


def timed(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    baseline = timed(COMMANDS["python -c pass"], args.repeat)
    for name, command in COMMANDS.items():
        seconds = timed(command, args.repeat)
        print(f"{name:<22} {seconds * 1e3:8.1f} ms   ratio to bare python {seconds / baseline:5.1f}")
    for name, command in list(COMMANDS.items())[1:]:
        cli_args = ", ".join(repr(a) for a in command[3:])
        probe = subprocess.run([sys.executable, "-c", PROBE.format(args=cli_args)], capture_output=True, text=True, check=True)
        heavy = probe.stderr.strip().splitlines()[-1]
        print(f"{name:<22} imports: {heavy}")
        if heavy != "HEAVY []":
            raise SystemExit(f"{name} imported a heavy framework")


if __name__ == "__main__":
    main()
