"""``vitrine models``: list, search and show the model catalog.

    vitrine models [--search TEXT] [--discipline D] [--modality M] [--format F] [--json] [--catalog FILE]
    vitrine models --show ID [--catalog FILE]

``--catalog FILE`` lists a catalog file instead of the shipped catalog: Vitrine's format or
WebIPred's ``catalog-all.json`` read as-is (entries ``webipred-<id>``, usable as
``vitrine predict --catalog FILE --model webipred-<id>``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..catalog import FORMATS, load_catalog


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the model catalog",
                                   description="List, search and show the models of the shipped catalog, or of "
                                               "a catalog file (--catalog).")
    parser.add_argument("--catalog", type=Path, default=None, metavar="FILE",
                        help="a catalog file instead of the shipped catalog: Vitrine's format or WebIPred's "
                             "catalog-all.json (its entries are listed as webipred-<id>)")
    parser.add_argument("--search", default="", metavar="TEXT", help="words to find in name, description, classes...")
    parser.add_argument("--discipline", metavar="D", help="e.g. Radiology, Dermatology (substring, any case)")
    parser.add_argument("--modality", metavar="M", help="e.g. X-ray, MRI, Endoscopy (substring, any case)")
    parser.add_argument("--format", choices=FORMATS, help="model format")
    parser.add_argument("--json", action="store_true", help="print the matching entries as JSON")
    parser.add_argument("--show", metavar="ID", help="print one entry's model card")
    parser.set_defaults(handler=run)


def run(args) -> int:
    catalog = load_catalog(args.catalog)
    if args.show:
        entry = catalog.get(args.show)
        print(json.dumps({"id": entry.id, "format": entry.format, "zenodo_record": entry.zenodo_record,
                          "card": entry.card.to_json()}, indent=2, ensure_ascii=False))
        return 0
    entries = catalog.search(args.search, discipline=args.discipline, modality=args.modality, format=args.format)
    if args.json:
        print(json.dumps([{"id": e.id, "format": e.format, "zenodo_record": e.zenodo_record, "card": e.card.to_json()}
                          for e in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no model matches; known disciplines: " + ", ".join(catalog.disciplines())
              + "; modalities: " + ", ".join(catalog.modalities()))
        return 1
    header = ("id", "discipline", "modality", "classes", "zenodo", "name")
    rows = [(e.id, e.discipline or "", e.modality or "",
             str(len(e.card.classes)) + (" (multi-label)" if e.card.multi_label else ""),
             str(e.zenodo_record or ""), e.card.name) for e in entries]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
