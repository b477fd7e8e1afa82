"""Run the whole corpus and print the counts as JSON: `python -m tests.bad_inputs.measure [--verbose] [KIND or ID prefix]`.

Used for the before/after figures of the hardening issue; the test suite runs the same cases in
tests/test_bad_inputs.py. Memory is capped so that an alias bomb shows as a hang instead of taking the machine.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from pathlib import Path

from tests.bad_inputs.cases import all_cases
from tests.bad_inputs.harness import one_line, run_case, summary
from tests.bad_inputs.seed import build_seed


def main() -> None:
    args = sys.argv[1:]
    del sys.argv[1:]  # outreach.cli registers only the command named in sys.argv (a kind such as "dnc" would be)
    verbose = "--verbose" in args
    limit = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
        root = Path(tmp)
        seed = build_seed(root / "seed")
        outcomes = {}
        cases = all_cases()
        only = [a for a in args if not a.startswith("--")]
        if only:  # kinds or id prefixes: only those
            cases = [c for c in cases if any(c.kind == o or c.id.startswith(o) for o in only)]
        for case in cases:
            o = run_case(case, root / "cases" / case.id, seed, time_limit_s=20)
            outcomes[case.id] = o
            if verbose:
                print(f"{o.verdict:8} {case.id}: {'; '.join(o.problems)} | {one_line(o.output, 240)}",
                      file=sys.stderr)
        print(json.dumps(summary(outcomes, {c.id: c.kind for c in cases}), ensure_ascii=False))


if __name__ == "__main__":
    main()
