# Sourced by the scripts: `install_missing PKG...` installs the Debian packages named (as root,
# with apt-get) or, when not root, says what to install and exits 1. Nothing to do for none.
install_missing() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ]; then
    echo "== installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $*; install them (sudo apt-get install $*) and run again" >&2
    exit 1
  fi
}
