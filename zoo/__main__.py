"""List the zoo: `python -m zoo` prints a table, `python -m zoo --json` a JSON list."""
import argparse
import json

from .registry import describe, list_models


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    parser.add_argument("--names", action="store_true", help="print the names only, space separated")
    args = parser.parse_args()
    if args.names:
        print(" ".join(list_models()))
        return
    rows = [describe(n) for n in list_models()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'name':<15} {'params':>8}  {'MACs/image':>10}  {'dataset':<14} description")
    for r in rows:
        print(f"{r['name']:<15} {r['params']:>8,}  {r['macs']:>10,}  {r['dataset']:<14} {r['description']}")


if __name__ == "__main__":
    main()
