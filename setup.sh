#!/usr/bin/env bash
# Create .venv and install the project with its test tools and sweep plugins (Hydra launchers, Optuna).
#   TORCH_SPEC       torch requirement to install first (default: torch==2.13.0)
#   TORCH_INDEX_URL  where to get it, e.g. https://download.pytorch.org/whl/cpu for a small CPU-only build,
#                    or https://download.pytorch.org/whl/cu128 for a specific CUDA build (default: pip's index)
#   PYTHON           interpreter for the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
# compat: the repo root on sys.path, where Hydra's plugin scan finds hydra_plugins/ (it cannot walk the default
# editable finder's namespace paths)
"${pip[@]}" -e ".[dev,sweeps,export]" --config-settings editable_mode=compat
.venv/bin/python -c "import torch, mujoco, gymnasium_robotics; print('ready: torch', torch.__version__, '| mujoco', mujoco.__version__, '| cuda', torch.cuda.is_available())"
