#!/bin/sh
# Run the codec benchmarks and write one JSON summary (git revision, machine, median and spread
# per benchmark, in ns) next to criterion's own output. Usage: benches/record.sh [out.json]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
out=${1:-$target/nvme-proto-codec-bench.json}
cd "$here"
cargo bench -p nvme-proto --bench codec >/dev/null
python3 - "$target/criterion" "$out" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, platform, sys
root, out, rev = sys.argv[1], sys.argv[2], sys.argv[3]
res = {}
for dirpath, _, files in os.walk(root):
    if dirpath.endswith(os.sep + "new") and "estimates.json" in files and "benchmark.json" in files:
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        m = est["median"]
        res[bench["full_id"]] = {
            "median_ns": round(m["point_estimate"], 2),
            "ci95_ns": [round(m["confidence_interval"]["lower_bound"], 2),
                        round(m["confidence_interval"]["upper_bound"], 2)],
            "mad_ns": round(est["median_abs_dev"]["point_estimate"], 2),
        }
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = {"git_rev": rev, "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
       "loadavg": os.getloadavg()}, "benchmarks": dict(sorted(res.items()))}
json.dump(doc, open(out, "w"), indent=2)
print(json.dumps(doc, indent=2))
PY
