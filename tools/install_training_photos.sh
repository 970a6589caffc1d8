#!/usr/bin/env bash
# Installs the Debian packages whose photos extend the training set (see ../shared/data/README.md).
set -euo pipefail
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
$sudo_cmd apt-get update -qq || true  # a fresh machine may hold no package lists yet
$sudo_cmd apt-get install -y --no-install-recommends \
  mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 opencv-doc
