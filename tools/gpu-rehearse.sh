#!/bin/bash
# Rehearse docs/gpu.md's five device runs (commands A, B, B, B, C) on a machine without a GPU:
# the commands are read from docs/gpu.md itself, run from a copy of the tracked files, and each
# "run" receives only its own part (as the device tool's carry gives it). The check at the end
# must refuse (exit 3: no GPU), after the wheel installed and `wheel check` passed.
#
#   PARTS=/tmp/ort311/parts PY=.venv/bin/python tools/gpu-rehearse.sh
#
# PARTS: `python -m zoo.verify.gpu.wheel split` of an onnxruntime-gpu wheel THIS Python can
#        install (the cp312 one is for the GPU machine; here e.g. the cp311 twin of 1.31.1).
# PY:    a Python with the zoo's toolchain (torch, onnx, onnxscript, onnx-ir, onnxruntime).
# SITE:  optional, prepended to PYTHONPATH: setuptools>=70.1 and wheel, where PY's setuptools
#        cannot build a wheel (pip install --no-build-isolation needs bdist_wheel).
# It removes and rewrites /tmp/rehearsal, /tmp/zoo-site, /tmp/ort-parts, /tmp/ort-gpu,
# /tmp/zoo-gpu-cache and /tmp/zoo-gpu-build.log, as the real runs do on the GPU machine. Models:
# dense_b0 at input width 64 (not B0-B7); ~3 minutes on two cores.
set -u
: "${PARTS:?the parts folder of a wheel this Python can install}" "${PY:?a Python with the toolchain}"
REPO=$(cd "$(dirname "$0")/.." && pwd); PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
R=/tmp/rehearsal
rm -rf $R /tmp/zoo-site /tmp/ort-parts /tmp/ort-gpu /tmp/zoo-gpu-cache /tmp/zoo-gpu-build.log
mkdir -p $R/repo $R/bin
(cd "$REPO" && git ls-files -z | xargs -0 -I{} cp --parents {} $R/repo/)
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > $R/bin/python3
printf '#!/bin/sh\necho "GPU 0: none (rehearsal)"\n' > $R/bin/nvidia-smi
chmod +x $R/bin/python3 $R/bin/nvidia-smi
export PATH=$R/bin:$PATH PYTHONPATH=${SITE:-}
D=$REPO/docs/gpu.md
A=$(grep '^export PYTHONSAFEPATH=1; mkdir -p /tmp/ort-parts' $D)
B=$(grep '^export PYTHONSAFEPATH=1; cp .gpu-wheel' $D)
C=$(grep '^export PYTHONSAFEPATH=1; set -o pipefail' $D)
[ -n "$A" ] && [ -n "$B" ] && [ -n "$C" ] || { echo "commands A, B, C not found in $D"; exit 2; }
# Smaller work, and no GPU to name: the only changes to the documented commands (no & in a
# replacement: bash 5.2 puts the matched text there).
A=${A//torch.cuda.get_device_name(0)/torch.cuda.is_available()}
A=${A//--build-only --cache \/tmp\/zoo-gpu-cache/--build-only --cache /tmp/zoo-gpu-cache --models dense_b0 --input-dim 64 --jobs 1}
C=${C//--out \$OUT\/gpu --cache/--out \$OUT/gpu --models dense_b0 --input-dim 64 --compile none --cache}
PARTLIST=("$PARTS"/*.part[0-9][0-9])
[ ${#PARTLIST[@]} = 5 ] || { echo "expected 5 parts in $PARTS, found ${#PARTLIST[@]}"; exit 2; }
i=0; rcs=()
for cmd in "$A" "$B" "$B" "$B" "$C"; do
  rm -rf $R/repo/.gpu-wheel && mkdir -p $R/repo/.gpu-wheel   # only this run's carry arrives
  cp "$PARTS/parts.json" "${PARTLIST[$i]}" $R/repo/.gpu-wheel/
  i=$((i + 1)); mkdir -p $R/out$i
  echo "=== run $i ($(date +%T))"
  (cd $R/repo && OUT=$R/out$i timeout 600 bash -c "$cmd"); rc=$?; rcs+=($rc)
  echo "=== run $i: exit $rc"
done
echo "exit codes: ${rcs[*]} (expected: 0 0 0 0 3 without a GPU)"
[ "${rcs[*]}" = "0 0 0 0 3" ]
