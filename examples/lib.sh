# Helpers the example scripts share; each sources it right after setting HERE.

# say TEXT...: a bold step heading.
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# wait_until SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds or time runs out.
wait_until() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= end )); then echo "timed out after ${limit}s waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}
