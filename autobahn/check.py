"""Reads an Autobahn|Testsuite report (index.json) and fails unless every
case passed: wstest itself exits 0 whatever the results.

A case passes when its behavior and its close behavior are OK.
INFORMATIONAL cases (no right answer) are listed and counted, not failed;
UNIMPLEMENTED ones fail (12.* and 13.* test permessage-deflate, which wsplug
offers).
"""
import collections
import json
import sys

ACCEPTED = {"OK", "INFORMATIONAL"}


def case_key(case):
    return tuple(int(part) for part in case.split("."))


def main(path):
    with open(path) as index:
        report = json.load(index)
    failed = []
    counts = collections.Counter()
    noted = collections.defaultdict(list)
    for agent, cases in report.items():
        for case in sorted(cases, key=case_key):
            result = cases[case]
            behavior, close = result["behavior"], result["behaviorClose"]
            counts[behavior] += 1
            if behavior not in ACCEPTED or close not in ACCEPTED:
                failed.append("%s %s: behavior %s, close %s (%s)" % (agent, case, behavior, close, result["reportfile"]))
            elif behavior != "OK":
                noted[behavior].append(case)
    print("Autobahn: %d cases: %s" % (sum(counts.values()), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    for behavior, cases in sorted(noted.items()):
        groups = sorted({".".join(case.split(".")[:2]) for case in cases}, key=case_key)
        print("  %s: %d (%s)" % (behavior, len(cases), ", ".join(groups)))
    for line in failed:
        print("  FAILED " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
