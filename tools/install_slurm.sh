#!/usr/bin/env bash
# `make test` installs Slurm for tests/*/test_slurm_*.py: Debian's slurmctld, slurmd,
# slurm-client and munge (slurm-wlm 22.05). The tests start their own private daemons in a
# temporary folder (tests/slurm_cluster.py); nothing is configured or started here, and no
# daemon the packages' scripts would start is left running. Quick (no apt) when already installed.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
BINARIES=(slurmctld slurmd munged sbatch srun squeue scontrol sinfo)
DAEMONS=(munged slurmctld slurmd slurmdbd)

missing=()
for binary in "${BINARIES[@]}"; do
  # sbin is not on every user's PATH; the tests look there too
  PATH="$PATH:/usr/sbin:/sbin" command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
[ ${#missing[@]} -eq 0 ] && exit 0

skip="the Slurm tests (tests/*/test_slurm_*.py) will be skipped"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm: ${missing[*]} not found and apt-get is not available: install Slurm 22.05's" \
       "slurmctld, slurmd, client commands and munge yourself; until then $skip"
  exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
  else
    echo "slurm: ${missing[*]} not found; installing needs root:" \
         "sudo apt-get install ${PACKAGES[*]}; until then $skip"
    exit 0
  fi
fi

running() {  # pids of Slurm/munge daemons now running, one a line (reads /proc, changes nothing)
  for daemon in "${DAEMONS[@]}"; do pgrep -x "$daemon" || true; done | sort -n
}
before=$(running)

# The packages' maintainer scripts start munge and slurmd through invoke-rc.d (or systemd's
# deb-systemd-invoke), which both ask policy-rc.d first: 101 means "do not start". A container
# often has one already; when there is none, ours is in place for the install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# swishtrain tools/install_slurm.sh, during apt-get install only\nexit 101\n' |
    "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  trap '"${SUDO[@]}" rm -f "$policy"' EXIT
fi

echo "slurm: installing ${PACKAGES[*]} with apt-get (missing: ${missing[*]})"
apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
# a fresh container has no package lists: update once when the install cannot find the packages
if ! "${apt[@]}" install -y -q --no-install-recommends "${PACKAGES[@]}"; then
  "${apt[@]}" update -q
  "${apt[@]}" install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# Whatever started anyway (a policy-rc.d that allows starts) is stopped through its own init
# script, then by the pids that were not running before the install.
started=$(comm -13 <(echo "$before") <(running) | grep . || true)
if [ -n "$started" ]; then
  for service in munge slurmd slurmctld; do
    "${SUDO[@]}" invoke-rc.d --force "$service" stop >/dev/null 2>&1 || true
  done
  for pid in $started; do "${SUDO[@]}" kill "$pid" 2>/dev/null || true; done
  sleep 1
  left=$(comm -12 <(echo "$started") <(running) | grep . || true)
  if [ -n "$left" ]; then
    echo "slurm: daemons the packages started are still running (pids $left)"; exit 1
  fi
  echo "slurm: stopped the daemons the packages started (pids $(echo $started))"
fi
