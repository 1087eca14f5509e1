"""Bring your own party tables: load, validate, align by PSI, train, evaluate.

Run:  python examples/bring_your_own_data.py [--social PATH] [--ecommerce PATH] [--out DIR]
Defaults to the shipped sample in data/sample (3,000 users; about 20 s in-process).
Column names are each party's own (``key=`` may differ per side); they stay with its table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedads import (
    Experiment,
    ExperimentConfig,
    FederationSettings,
    InputError,
    ProtocolConfig,
    load_party_table,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--social", default=str(SAMPLE / "social.csv"))
    parser.add_argument("--ecommerce", default=str(SAMPLE / "ecommerce.csv"))
    parser.add_argument("--backend", default="inprocess", choices=["simulation", "inprocess"])
    parser.add_argument("--out", default="fedads-out/byo")
    args = parser.parse_args(argv)

    try:
        # Each party validates its own table; labels and the existing-customer flag are
        # declared on the e-commerce side only (the social loader refuses them).
        social = load_party_table(args.social, party="social", key="key")
        ecommerce = load_party_table(
            args.ecommerce,
            party="ecommerce",
            key="key",
            label="label",
            existing="is_existing_customer",
        )
    except InputError as error:
        print(f"cannot load the tables: {error}")
        return 2

    settings = FederationSettings(protocol=ProtocolConfig(mode="efficient", epochs=3))
    config = ExperimentConfig(federation=settings, backend=args.backend, n_bootstrap=500)
    result = Experiment.from_tables(social, ecommerce, config).run(args.out, verbose=False)

    summary = result.data_summary
    print(f"aligned {summary['aligned']} of {summary['ecommerce_rows']} e-commerce users")
    for model, auc in sorted(
        (k.split(".", 1)[1], v) for k, v in result.headline().items() if k.startswith("auc.")
    ):
        print(f"{model:<15} AUC {auc:.4f}")
    print(f"report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
