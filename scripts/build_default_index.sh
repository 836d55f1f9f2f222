#!/usr/bin/env bash
# Rebuild the shipped default index (index/): tag texts from embedtag/data/{tags,glosses,glosses.zh}.json
# and exemplar vectors (with their annotators' core/also tags) from the curated-list descriptions, then
# the tag head, calibration and kNN examples from the labelled dev set (about 15 min on 2 cores).
#   bash scripts/build_default_index.sh [path/to/dev/items.jsonl] [path/to/exemplars.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-../shared/data/dev/items.jsonl}
EXEMPLARS=${2:-../shared/data/exemplars/exemplars.jsonl}
EMBEDTAG=${EMBEDTAG:-.venv/bin/embedtag}
# tag texts and exemplars: float MiniLM's vectors; the ranker, head and examples: the default
# encoder's (the static int8 model), which is what reads the READMEs at tagging time
"$EMBEDTAG" --backend torch build-index --exemplars "$EXEMPLARS" --out index
"$EMBEDTAG" calibrate "$DEV" --index index
"$EMBEDTAG" info --index index
