"""List the zoo: `python -m zoo` prints a table, `python -m zoo --json` a JSON list, with whether
weights/ ships each model's weights and their accuracy. The ensemble is described with the members
its shipped weights hold, else with every candidate.
"""
import argparse
import json

from .cli import pct
from .pretrained import shipped_manifest
from .registry import describe, get_entry, list_models


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    args = parser.parse_args()
    shipped = shipped_manifest()
    rows = []
    for name in list_models():
        e = shipped["models"].get(name)
        rows.append(describe(name, **(e["kwargs"] if e and get_entry(name).members is not None else {})))
        rows[-1]["shipped_weights"] = e is not None
        rows[-1]["metrics"] = {k: e["metrics"].get(k) for k in ("val_acc", "test_acc")} if e else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'name':<15} {'params':>8}  {'MACs/image':>10}  {'dataset':<14} {'weights':<8} {'val':>6} "
          f"{'test':>6}  description")
    for r in rows:
        m = r["metrics"] or {}
        print(f"{r['name']:<15} {r['params']:>8,}  {r['macs']:>10,}  {r['dataset']:<14} "
              f"{'shipped' if r['shipped_weights'] else 'none':<8} {pct(m.get('val_acc')):>6} "
              f"{pct(m.get('test_acc')):>6}  {r['description']}"
              + (f" ({'members' if r['shipped_weights'] else 'candidates'}: {' + '.join(r['members'])})"
                 if "members" in r else ""))
    if shipped["models"]:
        print(f"\nshipped weights: {len(shipped['models'])} models in weights/, published "
              f"{shipped.get('published')} from commit {str(shipped.get('source_commit'))[:12]}; "
              f"zoo.load_model(name, pretrained=True) loads them, `make serve` serves them")
    if missing := [r["name"] for r in rows if not r["shipped_weights"]]:
        print(f"no shipped weights: {', '.join(missing)} (`make train-all export publish-weights`)")


if __name__ == "__main__":
    main()
