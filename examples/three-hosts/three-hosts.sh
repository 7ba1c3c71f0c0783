#!/usr/bin/env bash
# Three "hosts" (network namespaces on one virtual switch), a Rumor agent on each, joined into
# one mesh; an HTTP service "web" on host1 and host2 that registers itself with an HTTP check;
# from host3, DNS (dig web.service.rumor SRV) and a local load-balancer listener that alternates
# between the two. Then cut a host off with iptables and watch the others route around it.
#
#   sudo ./three-hosts.sh            interactive: prints what to try, then waits for commands
#   sudo ./three-hosts.sh --check    scripted run of the whole story; exit 0 if it all worked
#
# Needs root, iproute2, iptables, curl, dig (dnsutils) and python3. Everything it makes
# (namespaces, the veths and iptables rules inside them, processes, a temp dir) carries a
# per-run name and is removed on exit, Ctrl-C or error. Nothing is changed in the host's own
# network namespace.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"        # say, wait_until
REPO="$(cd "$HERE/../.." && pwd)"
RID="$(printf '%04x' $((RANDOM * 2 % 65536)))"
NET="10.251.$((RANDOM % 200 + 20))"
SW="rx${RID}sw"
WORK="$(mktemp -d "/tmp/rumor-three-hosts.XXXXXX")"
PIDS=()
MODE="${1:-}"

if [[ $(id -u) -ne 0 ]]; then echo "run me as root (network namespaces need it)" >&2; exit 1; fi
for tool in ip iptables curl dig python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iproute2 iptables curl dnsutils python3)" >&2; exit 1; }
done
if command -v rumor >/dev/null && [[ -z "${RUMOR_FROM_SOURCE:-}" ]]; then
  RUMOR=(rumor)
else
  RUMOR=(env "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" python3 -m registry.cli)
fi

ns()   { echo "rx${RID}h$1"; }                 # namespace of host N
ip_of(){ echo "$NET.$(( $1 + 10 ))"; }          # address of host N
on()   { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }
# Start a long-running program on host $1 in the background. `exec` makes the backgrounded
# subshell become the program itself (ip netns exec execs too), so $! is the program's own PID
# and cleanup can end it; with a plain function call, $! would be the subshell and the program
# would outlive the script.
spawn() { local h=$1; shift; exec ip netns exec "$(ns "$h")" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "cleaning up"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for h in 1 2 3; do ip netns del "$(ns "$h")" 2>/dev/null || true; done
  ip netns del "$SW" 2>/dev/null || true
  rm -rf "$WORK"
  echo "removed namespaces $(ns 1) $(ns 2) $(ns 3) $SW and $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the network: one switch namespace with a bridge, three hosts plugged into it -------------
say "building three hosts on $NET.0/24 (run id $RID)"
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for h in 1 2 3; do
  ip netns add "$(ns "$h")"
  ip link add "rx${RID}h${h}i" type veth peer name "rx${RID}h${h}o"
  ip link set "rx${RID}h${h}i" netns "$(ns "$h")"
  ip link set "rx${RID}h${h}o" netns "$SW"
  ip -n "$SW" link set "rx${RID}h${h}o" master br0 up
  ip -n "$(ns "$h")" link set lo up
  ip -n "$(ns "$h")" addr add "$(ip_of "$h")/24" dev "rx${RID}h${h}i"
  ip -n "$(ns "$h")" link set "rx${RID}h${h}i" up
  echo "  host$h  namespace $(ns "$h")  address $(ip_of "$h")"
done

# --- an agent on each host ---------------------------------------------------------------------
say "starting a Rumor agent on each host (logs in $WORK/hostN.log)"
for h in 1 2 3; do
  join=()
  [[ $h -gt 1 ]] && join=(-retry-join "$(ip_of 1)" -retry-interval 1s)
  (spawn "$h" "${RUMOR[@]}" agent -node "host$h" -bind "$(ip_of "$h")" -client 127.0.0.1 \
      -data-dir "$WORK/host$h-data" "${join[@]}") >"$WORK/host$h.log" 2>&1 &
  PIDS+=($!)
done
for h in 1 2 3; do
  wait_until 30 "the agent on host$h" on "$h" curl -sf 127.0.0.1:8500/v1/agent/self
done
members_alive() { [[ $(on "$1" curl -sf 127.0.0.1:8500/v1/agent/members | grep -o '"Status": *1' | wc -l) -eq $2 ]]; }
wait_until 30 "all three agents to see each other" members_alive 3 3
on 3 "${RUMOR[@]}" members || true

# --- the service on host1 and host2 ------------------------------------------------------------
say "starting the web service on host1 and host2, each registering with its local agent"
for h in 1 2; do
  mkdir -p "$WORK/www$h"
  echo "hello from host$h" >"$WORK/www$h/index.html"
  (spawn "$h" python3 -m http.server 8080 --bind "$(ip_of "$h")" --directory "$WORK/www$h") \
      >"$WORK/web$h.log" 2>&1 &
  PIDS+=($!)
  wait_until 10 "the web server on host$h" on "$h" curl -sf "http://$(ip_of "$h"):8080/"
  on "$h" curl -sf -X PUT 127.0.0.1:8500/v1/agent/service/register -d "{
      \"Name\": \"web\", \"ID\": \"web-host$h\", \"Address\": \"$(ip_of "$h")\", \"Port\": 8080,
      \"Tags\": [\"v1\"],
      \"Check\": {\"HTTP\": \"http://$(ip_of "$h"):8080/\", \"Interval\": \"2s\", \"Timeout\": \"1s\"}}"
done

srv_targets() { on 3 dig +short @127.0.0.1 -p 8600 web.service.rumor SRV | sort; }
srv_count_is() { [[ $(srv_targets | grep -c . || true) -eq $1 ]]; }
wait_until 30 "both instances to be healthy in host3's DNS" srv_count_is 2

say "from host3: dig @127.0.0.1 -p 8600 web.service.rumor SRV"
on 3 dig +noall +answer +additional @127.0.0.1 -p 8600 web.service.rumor SRV

# --- the load balancer on host3 ----------------------------------------------------------------
say "from host3: a local HTTP listener on 127.0.0.1:9000 for the service web"
on 3 curl -sf -X PUT 127.0.0.1:8500/v1/lb/listener \
  -d '{"Name": "web", "Bind": "127.0.0.1:9000", "Mode": "http", "Service": "web"}' >/dev/null
lb_serves_both() {
  local out; out=$(for _ in 1 2 3 4; do on 3 curl -sf --max-time 2 127.0.0.1:9000/; done)
  grep -q host1 <<<"$out" && grep -q host2 <<<"$out"
}
wait_until 20 "the listener to alternate between host1 and host2" lb_serves_both
for _ in 1 2 3 4; do on 3 curl -s --max-time 2 127.0.0.1:9000/; done

cut_off() {   # host N stops hearing anyone and nobody hears it (the agent process keeps running)
  on "$1" iptables -I INPUT -s "$NET.0/24" -j DROP
  on "$1" iptables -I OUTPUT -d "$NET.0/24" -j DROP
}
heal() {
  on "$1" iptables -D INPUT -s "$NET.0/24" -j DROP 2>/dev/null || true
  on "$1" iptables -D OUTPUT -d "$NET.0/24" -j DROP 2>/dev/null || true
}
only_host2() { local t; t=$(srv_targets); [[ $t == *"$(ip_of 2)"* || $t == *host2* ]] && srv_count_is 1; }
lb_only_host2() {
  local out; out=$(for _ in 1 2 3 4; do on 3 curl -sf --max-time 2 127.0.0.1:9000/; done)
  ! grep -q host1 <<<"$out" && [[ $(grep -c host2 <<<"$out") -eq 4 ]]
}

if [[ $MODE == "--check" ]]; then
  say "cutting host1 off the network"
  cut_off 1
  t0=$SECONDS
  wait_until 60 "host3 to drop host1's instance from DNS" only_host2
  echo "host1's instance left host3's DNS answers after $((SECONDS - t0))s"
  wait_until 30 "the listener to send everything to host2" lb_only_host2
  say "healing host1"
  heal 1
  t0=$SECONDS
  wait_until 90 "host1's instance to come back" srv_count_is 2
  echo "host1's instance was back after $((SECONDS - t0))s"
  wait_until 30 "the listener to use host1 again" lb_serves_both
  say "all good"
  exit 0
fi

NS1=$(ns 1); NS2=$(ns 2); NS3=$(ns 3)
cat <<EOF

================================================================================================
 Three hosts are running. In another terminal (as root), watch from host3:

   watch -n1 "ip netns exec $NS3 dig +short @127.0.0.1 -p 8600 web.service.rumor SRV"
   while sleep 0.5; do ip netns exec $NS3 curl -s --max-time 1 127.0.0.1:9000/; done
   ip netns exec $NS3 ${RUMOR[*]} members
   ip netns exec $NS3 curl -s 127.0.0.1:8500/v1/health/service/web | python3 -m json.tool
   ip netns exec $NS3 curl -s 127.0.0.1:8500/v1/lb/listeners | python3 -m json.tool

 Cut host1 off (all traffic to and from the other hosts dropped; its agent keeps running):

   ip netns exec $NS1 iptables -I INPUT  -s $NET.0/24 -j DROP
   ip netns exec $NS1 iptables -I OUTPUT -d $NET.0/24 -j DROP

 Within seconds host2 and host3 mark host1 failed: its instance leaves the SRV answer and the
 listener sends everything to host2. Heal it, and it is back at the next gossip exchange:

   ip netns exec $NS1 iptables -D INPUT  -s $NET.0/24 -j DROP
   ip netns exec $NS1 iptables -D OUTPUT -d $NET.0/24 -j DROP

 Or type a command here:  cut N | heal N | dig | curl | members | quit   (Ctrl-C also quits)
 Agent logs: $WORK/host{1,2,3}.log
================================================================================================
EOF

while true; do
  printf 'three-hosts> '
  read -r cmd arg || break
  case "$cmd" in
    cut)     [[ $arg =~ ^[123]$ ]] && { cut_off "$arg"; echo "host$arg is cut off"; } || echo "cut 1|2|3" ;;
    heal)    [[ $arg =~ ^[123]$ ]] && { heal "$arg"; echo "host$arg is healed"; } || echo "heal 1|2|3" ;;
    dig)     on 3 dig +noall +answer @127.0.0.1 -p 8600 web.service.rumor SRV ;;
    curl)    for _ in 1 2 3 4; do on 3 curl -s --max-time 2 127.0.0.1:9000/ || echo "(no answer)"; done ;;
    members) on 3 "${RUMOR[@]}" members || on 3 curl -s 127.0.0.1:8500/v1/agent/members ;;
    quit|exit|q) break ;;
    "")      ;;
    *)       echo "commands: cut N, heal N, dig, curl, members, quit" ;;
  esac
done
