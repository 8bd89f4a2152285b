# Shared by the bench scripts (sourced, not run).

# wait_up PORT PATH: wait until a server answers GET PATH on 127.0.0.1:PORT (2 minutes at most).
wait_up() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0
    sleep 0.2
  done
  echo "server on $1 did not come up" >&2
  return 1
}

# package_file: a file shipped in PyPI packages, wherever pip put them.
package_file() {  # PACKAGE FILE
  "$BIN/python" -c 'import sys; from modelserve.sources import PackageSource as P; print(P(package=sys.argv[1], file=sys.argv[2]).resolve())' "$1" "$2"
}
