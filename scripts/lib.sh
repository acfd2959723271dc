# Shared by the scripts in this folder. Source it; do not run it.
set -euo pipefail
MP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MP_BUILD="${MP_BUILD_DIR:-$MP_ROOT/build}"
MP_BIN="$MP_BUILD/bin"

mp_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
mp_die() { printf 'error: %s\n' "$*" >&2; exit 1; }
