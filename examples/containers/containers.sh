#!/usr/bin/env bash
# Containers that publish themselves: a Rumor agent watching Podman (its Docker-compatible
# API), two containers labelled rumor.service.name=web, found in DNS (dig web.service.rumor SRV)
# and served behind a load-balancer listener that alternates between them. Stop one and it
# leaves DNS and the listener; start it again and it is back.
#
#   sudo ./containers.sh            interactive: prints what to try, then waits for commands
#   sudo ./containers.sh --check    scripted run of the whole story; exit 0 if it all worked
#
# Needs root, podman with the runc runtime, Debian's busybox-static (the image is built from
# it locally: no registry needed), curl, dig and python3. Everything runs in a network
# namespace of its own with Podman's own storage in a temp dir; all of it (containers, image,
# namespace, processes, the temp dir) is removed on exit, Ctrl-C or error. Nothing is changed
# in the host's own network or in the host's Podman storage.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"        # say, wait_until
REPO="$(cd "$HERE/../.." && pwd)"
RID="$(printf '%04x' $((RANDOM * 2 % 65536)))"
NS="rumor-containers-$RID"
WORK="$(mktemp -d "/tmp/rumor-containers.XXXXXX")"
IMAGE="localhost/rumor-demo-$RID:busybox"
PIDS=()
NAMES=()
MODE="${1:-}"

if [[ $(id -u) -ne 0 ]]; then echo "run me as root (podman and namespaces need it)" >&2; exit 1; fi
for tool in ip nsenter podman runc curl dig python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install podman runc curl dnsutils python3 util-linux)" >&2; exit 1; }
done
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 \
  || { echo "missing a static /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }
if command -v rumor >/dev/null && [[ -z "${RUMOR_FROM_SOURCE:-}" ]]; then
  RUMOR=(rumor)
else
  RUMOR=(env "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" python3 -m registry.cli)
fi

# Podman as these VMs need it (runc: crun refuses the hybrid cgroup layout; cgroupfs; no
# default ulimits above the VM's hard limit), with storage of its own, in our namespace.
# nsenter, not `ip netns exec`: that remounts /sys and would hide the cgroup hierarchy.
printf '[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"
inns() { nsenter --net="/run/netns/$NS" "$@"; }
pm() { inns podman --root "$WORK/root" --runroot "$WORK/run" --runtime runc \
         --cgroup-manager cgroupfs "$@"; }
# `exec` makes the backgrounded subshell become the program, so $! is the program's own PID
spawn() { exec nsenter --net="/run/netns/$NS" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "cleaning up"
  for n in "${NAMES[@]}"; do pm rm -f -t 0 "$n" >/dev/null 2>&1 || true; done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  pm system reset -f >/dev/null 2>&1 || true
  # conmon of exec sessions lingers a while; end what this run started (named by its dir)
  for p in /proc/[0-9]*; do
    if grep -qs "$WORK" "$p/cmdline" 2>/dev/null; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
  done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
  echo "removed containers, image, namespace $NS and $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "a network namespace of our own: $NS"
ip netns add "$NS"
ip -n "$NS" link set lo up

say "building the image $IMAGE from busybox-static (podman import; no registry)"
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/www" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in sh httpd sleep test echo cat hostname; do ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
pm import --change 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' \
   --change 'STOPSIGNAL SIGKILL' "$WORK/rootfs.tar" "$IMAGE" >/dev/null

say "Podman's Docker-compatible API on $WORK/api.sock"
(spawn podman --root "$WORK/root" --runroot "$WORK/run" --runtime runc --cgroup-manager cgroupfs \
   system service --time=0 "unix://$WORK/api.sock") >"$WORK/podman.log" 2>&1 &
PIDS+=($!)
wait_until 20 "the engine's socket" curl -sf --unix-socket "$WORK/api.sock" http://d/_ping

say "a Rumor agent watching it: rumor agent -docker $WORK/api.sock (log in $WORK/agent.log)"
(spawn "${RUMOR[@]}" agent -node containers -bind 127.0.0.1 -client 127.0.0.1 \
   -data-dir "$WORK/agent-data" -docker "$WORK/api.sock") >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_until 30 "the agent" inns curl -sf 127.0.0.1:8500/v1/agent/self

say "two containers labelled rumor.service.name=web, published on 127.0.0.1:8081 and :8082"
for i in 1 2; do
  name="web$i-$RID"
  NAMES+=("$name")
  pm run -d --name "$name" -p "127.0.0.1:808$i:80" \
     --label rumor.service.name=web --label rumor.service.tags=demo \
     --label rumor.service.meta.version=v1 \
     "$IMAGE" sh -c "echo hello from container web$i > /www/index.html; exec httpd -f -p 80 -h /www" >/dev/null
  echo "  podman run -d --name $name -p 127.0.0.1:808$i:80 --label rumor.service.name=web ... "
done

srv() { inns dig +short @127.0.0.1 -p 8600 web.service.rumor SRV | sort; }
srv_count_is() { [[ $(srv | grep -c . || true) -eq $1 ]]; }
wait_until 30 "both containers in DNS" srv_count_is 2
say "dig @127.0.0.1 -p 8600 web.service.rumor SRV   (the ports are the published ones)"
inns dig +noall +answer +additional @127.0.0.1 -p 8600 web.service.rumor SRV
say "rumor services list   (Source: docker)"
inns "${RUMOR[@]}" services list

say "a load-balancer listener on 127.0.0.1:9000 for the service web"
inns curl -sf -X PUT 127.0.0.1:8500/v1/lb/listener \
  -d '{"Name": "web", "Bind": "127.0.0.1:9000", "Mode": "http", "Service": "web"}' >/dev/null
lb_answers() { for _ in 1 2 3 4; do inns curl -sf --max-time 2 127.0.0.1:9000/; done; }
lb_serves_both() { local out; out=$(lb_answers); grep -q web1 <<<"$out" && grep -q web2 <<<"$out"; }
lb_only_web2() { local out; out=$(lb_answers); ! grep -q web1 <<<"$out" && [[ $(grep -c web2 <<<"$out") -eq 4 ]]; }
wait_until 30 "the listener to use both containers" lb_serves_both
lb_answers

if [[ $MODE == "--check" ]]; then
  say "stopping web1"
  pm stop -t 0 "web1-$RID" >/dev/null
  wait_until 30 "web1 to leave DNS" srv_count_is 1
  wait_until 30 "the listener to send everything to web2" lb_only_web2
  echo "web1 left DNS and the listener"
  say "starting web1 again"
  pm start "web1-$RID" >/dev/null
  wait_until 30 "web1 to come back in DNS" srv_count_is 2
  wait_until 30 "the listener to use web1 again" lb_serves_both
  echo "web1 was back"
  say "all good"
  exit 0
fi

cat <<EOF

================================================================================================
 Two containers publish themselves. In another terminal (as root):

   nsenter --net=/run/netns/$NS dig +short @127.0.0.1 -p 8600 web.service.rumor SRV
   while sleep 0.5; do nsenter --net=/run/netns/$NS curl -s --max-time 1 127.0.0.1:9000/; done
   nsenter --net=/run/netns/$NS curl -s 127.0.0.1:8500/v1/agent/services | python3 -m json.tool

 Or type a command here:  stop N | start N | dig | curl | services | quit   (Ctrl-C also quits)
 Logs: $WORK/agent.log, $WORK/podman.log
================================================================================================
EOF

while true; do
  printf 'containers> '
  read -r cmd arg || break
  case "$cmd" in
    stop)     [[ $arg =~ ^[12]$ ]] && pm stop -t 0 "web$arg-$RID" || echo "stop 1|2" ;;
    start)    [[ $arg =~ ^[12]$ ]] && pm start "web$arg-$RID" || echo "start 1|2" ;;
    dig)      inns dig +noall +answer @127.0.0.1 -p 8600 web.service.rumor SRV ;;
    curl)     for _ in 1 2 3 4; do inns curl -s --max-time 2 127.0.0.1:9000/ || echo "(no answer)"; done ;;
    services) inns "${RUMOR[@]}" services list ;;
    quit|exit|q) break ;;
    "")       ;;
    *)        echo "commands: stop N, start N, dig, curl, services, quit" ;;
  esac
done
