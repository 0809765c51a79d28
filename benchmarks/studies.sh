#!/usr/bin/env bash
# Every study at the "small" size on the default phantom (fibre composite 32×128×128,
# LQ scan), one after the other, timed. Results: benchmarks/results/studies/.
#   bash benchmarks/studies.sh
set -euo pipefail
out=${1:-benchmarks/results/studies}
mkdir -p "$out"
for study in learning-curve data-fraction noise-robustness stage2-duration over-classes gradcam report; do
    start=$(date +%s)
    xctdask study "$study" --size small --out "$out" 2>/dev/null
    echo "$study: $(( $(date +%s) - start )) s" | tee -a "$out/timings.txt"
done
