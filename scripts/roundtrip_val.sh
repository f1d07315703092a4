#!/usr/bin/env bash
# encode -> info -> decode every val clip through the CLI, full length (default receiver).
# Usage: scripts/roundtrip_val.sh [OUTDIR]
cd "$(dirname "$0")/.."
DATA=${TALKCODEC_DATA:-../shared/data}
OUT=${1:-/tmp/rt}
mkdir -p "$OUT"
grep ",val," "$DATA/manifest.csv" | cut -d, -f1 | while read f; do
  n=$(basename "$f"); s=$(date +%s.%N)
  .venv/bin/talkcodec encode "$DATA/$f" -o "$OUT/$n.tc" >/dev/null || { echo "FAIL encode $n"; continue; }
  .venv/bin/talkcodec info --json "$OUT/$n.tc" > "$OUT/$n.json" || { echo "FAIL info $n"; continue; }
  .venv/bin/talkcodec decode "$OUT/$n.tc" -o "$OUT/$n.mp4" >/dev/null || { echo "FAIL decode $n"; continue; }
  e=$(date +%s.%N)
  .venv/bin/python - "$OUT" "$n" "$s" "$e" <<'PY'
import json, sys, av
out, n, s, e = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
info = json.load(open(f"{out}/{n}.json"))
with av.open(f"{out}/{n}.mp4") as c:
    v = c.streams.video[0]; frames = sum(1 for _ in c.decode(video=0))
    has_a = bool(c.streams.audio)
print(f"OK {n[:60]:60s} dur {info.get('duration_s'):.2f}s frames {frames} audio {has_a} kbit/s total {info['total']['kbit_per_s']:.2f} (w/o identity {info['total_without_identity']['kbit_per_s']:.2f}, 8x8 {info['lowres_with_headers']['kbit_per_s']:.2f}) wall {e-s:.1f}s")
PY
done
