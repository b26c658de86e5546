#!/usr/bin/env bash
# Installs ffmpeg, nginx-rtmp and PostgreSQL from Debian when missing (as root), or says what to install.
# PostgreSQL: only its binaries are needed (the tests run initdb/pg_ctl in a temporary directory).
# --optional: only warn (the node runs without them; only HLS/SRT sources need ffmpeg).
set -euo pipefail
# --venv: only make sure `python3 -m venv` works (Debian ships it as python3-venv).
if [ "${1:-}" = "--venv" ]; then
  "${PYTHON:-python3}" -c "import ensurepip, venv" >/dev/null 2>&1 && exit 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian: python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    exit 0
  fi
  echo "error: python3 cannot create a venv -- install it with: sudo apt-get install python3-venv" >&2
  exit 1
fi
optional=0
[ "${1:-}" = "--optional" ] && optional=1
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if [ $optional -eq 0 ]; then
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  ls /usr/lib/nginx/modules/ngx_rtmp_module.so >/dev/null 2>&1 || missing+=(libnginx-mod-rtmp)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing from Debian: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx's postinst may try to start the service; we never need it running.
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  # Debian starts nginx on install where it can; the tests start their own.
  (command -v nginx >/dev/null && nginx -s stop) >/dev/null 2>&1 || true
  # Likewise Debian's postgresql service: the tests start their own server, never this one.
  case " $pkgs " in
    *" postgresql "*) (command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null |
      while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop; done) >/dev/null 2>&1 || true ;;
  esac
  exit 0
fi
msg="missing system packages: $pkgs -- install them with: sudo apt-get install $pkgs"
if [ $optional -eq 1 ]; then
  echo "warning: $msg (HLS and SRT sources need ffmpeg)" >&2
  exit 0
fi
echo "error: $msg" >&2
exit 1
