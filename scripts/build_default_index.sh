#!/usr/bin/env bash
# Rebuild the shipped default index (index/): tag texts from embedtag/data/{tags,glosses}.json and
# exemplar vectors from the curated-list descriptions, then calibration and kNN examples from the
# labelled dev set.
#   bash scripts/build_default_index.sh [path/to/dev/items.jsonl] [path/to/exemplars.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-../shared/data/dev/items.jsonl}
EXEMPLARS=${2:-../shared/data/exemplars/exemplars.jsonl}
EMBEDTAG=${EMBEDTAG:-.venv/bin/embedtag}
"$EMBEDTAG" build-index --exemplars "$EXEMPLARS" --out index
"$EMBEDTAG" calibrate "$DEV" --index index
"$EMBEDTAG" info --index index
