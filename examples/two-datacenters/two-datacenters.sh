#!/usr/bin/env bash
# Two datacenters of network namespaces on one virtual switch, joined by a WAN gossip pool.
#
#   dc1: host1 (WAN member), host2 (LAN only)
#   dc2: host3 and host4 (WAN members), host5 (LAN only, runs the service "web")
#
# From host2, a LAN-only agent of dc1: read dc2's catalog (?dc=dc2), resolve
# web.service.dc2.rumor, and open a load-balancer listener for "web" that fails over to dc2
# while dc1 has no healthy instance, and comes back when one appears. Then kill dc2's first WAN
# member and watch the reads go through the second.
#
#   sudo ./two-datacenters.sh            interactive: prints what to try, then waits
#   sudo ./two-datacenters.sh --check    scripted run of the whole story; exit 0 if it all worked
#
# Needs root, iproute2, iptables, curl, dig (dnsutils) and python3. Everything it makes carries a
# per-run name and is removed on exit, Ctrl-C or error; nothing changes in the host's own
# network namespace.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"        # say, wait_until
REPO="$(cd "$HERE/../.." && pwd)"
RID="$(printf '%04x' $((RANDOM * 2 % 65536)))"
NET="10.252.$((RANDOM % 200 + 20))"
SW="rd${RID}sw"
WORK="$(mktemp -d "/tmp/rumor-two-datacenters.XXXXXX")"
PIDS=()
AGENT_PID=()
MODE="${1:-}"
HOSTS="1 2 3 4 5"

if [[ $(id -u) -ne 0 ]]; then echo "run me as root (network namespaces need it)" >&2; exit 1; fi
for tool in ip iptables curl dig python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iproute2 iptables curl dnsutils python3)" >&2; exit 1; }
done
if command -v rumor >/dev/null && [[ -z "${RUMOR_FROM_SOURCE:-}" ]]; then
  RUMOR=(rumor)
else
  RUMOR=(env "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" python3 -m registry.cli)
fi

ns()   { echo "rd${RID}h$1"; }
ip_of(){ echo "$NET.$(( $1 + 10 ))"; }
on()   { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }
spawn() { local h=$1; shift; exec ip netns exec "$(ns "$h")" "$@"; }
api()  { on "$1" curl -sf --max-time "${3:-5}" "http://$(ip_of "$1"):8500$2"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "cleaning up"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for h in $HOSTS; do ip netns del "$(ns "$h")" 2>/dev/null || true; done
  ip netns del "$SW" 2>/dev/null || true
  rm -rf "$WORK"
  echo "removed namespaces $(for h in $HOSTS; do printf '%s ' "$(ns "$h")"; done)$SW and $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building five hosts on $NET.0/24 (run id $RID)"
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for h in $HOSTS; do
  ip netns add "$(ns "$h")"
  ip link add "rd${RID}h${h}i" type veth peer name "rd${RID}h${h}o"
  ip link set "rd${RID}h${h}i" netns "$(ns "$h")"
  ip link set "rd${RID}h${h}o" netns "$SW"
  ip -n "$SW" link set "rd${RID}h${h}o" master br0 up
  ip -n "$(ns "$h")" link set lo up
  ip -n "$(ns "$h")" addr add "$(ip_of "$h")/24" dev "rd${RID}h${h}i"
  ip -n "$(ns "$h")" link set "rd${RID}h${h}i" up
done

dc_of() { [[ $1 -le 2 ]] && echo dc1 || echo dc2; }
say "starting the agents (logs in $WORK/hostN.log)"
start_agent() {
  local h=$1; shift
  (spawn "$h" "${RUMOR[@]}" agent -node "host$h" -datacenter "$(dc_of "$h")" \
      -bind "$(ip_of "$h")" -client "$(ip_of "$h")" -data-dir "$WORK/host$h-data" \
      -retry-interval 1s "$@") >>"$WORK/host$h.log" 2>&1 &
  PIDS+=($!)
  AGENT_PID[$h]=$!
}
start_agent 1 -serf-wan-port 8302
start_agent 2 -retry-join "$(ip_of 1)"
start_agent 3 -retry-join-wan "$(ip_of 1)"
start_agent 4 -retry-join "$(ip_of 3)" -retry-join-wan "$(ip_of 1)"
start_agent 5 -retry-join "$(ip_of 3)"
for h in $HOSTS; do wait_until 30 "the agent on host$h" api "$h" /v1/agent/self; done
wan_alive() { [[ $(api 1 "/v1/agent/members?wan=1" | grep -o '"Status": *1' | wc -l) -eq 3 ]]; }
wait_until 30 "the WAN pool of three" wan_alive
echo "WAN members, as host1 sees them:"
on 1 "${RUMOR[@]}" members -wan -http-addr "$(ip_of 1):8500"

say "the service web on host5 (dc2)"
mkdir -p "$WORK/www5"; echo "hello from host5 in dc2" >"$WORK/www5/index.html"
(spawn 5 python3 -m http.server 8080 --bind "$(ip_of 5)" --directory "$WORK/www5") >"$WORK/web5.log" 2>&1 &
PIDS+=($!)
wait_until 10 "the web server on host5" on 5 curl -sf "http://$(ip_of 5):8080/"
on 5 curl -sf -X PUT "http://$(ip_of 5):8500/v1/agent/service/register" -d "{
  \"Name\": \"web\", \"ID\": \"web-host5\", \"Address\": \"$(ip_of 5)\", \"Port\": 8080,
  \"Check\": {\"HTTP\": \"http://$(ip_of 5):8080/\", \"Interval\": \"2s\"}}"

dc2_web() { api 2 "/v1/health/service/web?dc=dc2&passing" | grep -q host5; }
wait_until 30 "host2 (dc1) to see web in dc2" dc2_web
say "from host2 (dc1, LAN only): the datacenters, and dc2's web through a WAN member"
api 2 /v1/catalog/datacenters; echo
on 2 "${RUMOR[@]}" catalog services -datacenter dc2 -http-addr "$(ip_of 2):8500"
say "from host2: dig web.service.dc2.rumor SRV"
dns_dc2() { on 2 dig +short @"$(ip_of 2)" -p 8600 web.service.dc2.rumor SRV | grep -q host5; }
wait_until 20 "web.service.dc2.rumor from host2" dns_dc2
on 2 dig +noall +answer +additional @"$(ip_of 2)" -p 8600 web.service.dc2.rumor SRV

say "from host2: a listener on 127.0.0.1:9000 for web, failing over to dc2"
on 2 curl -sf -X PUT "http://$(ip_of 2):8500/v1/lb/listener" -d '{"Name": "web",
  "Bind": "127.0.0.1:9000", "Mode": "http", "Service": "web",
  "Failover": {"Datacenters": ["dc2"]}}' >/dev/null
lb_says() { on 2 curl -sf --max-time 2 127.0.0.1:9000/ | grep -q "$1"; }
wait_until 20 "the listener to be served by dc2" lb_says "in dc2"
on 2 curl -s --max-time 2 127.0.0.1:9000/

if [[ $MODE == "--check" ]]; then
  say "a web instance appears in dc1 (host1): the listener comes back to dc1"
  mkdir -p "$WORK/www1"; echo "hello from host1 in dc1" >"$WORK/www1/index.html"
  (spawn 1 python3 -m http.server 8080 --bind "$(ip_of 1)" --directory "$WORK/www1") >"$WORK/web1.log" 2>&1 &
  PIDS+=($!)
  wait_until 10 "the web server on host1" on 1 curl -sf "http://$(ip_of 1):8080/"
  on 1 curl -sf -X PUT "http://$(ip_of 1):8500/v1/agent/service/register" -d "{
    \"Name\": \"web\", \"ID\": \"web-host1\", \"Address\": \"$(ip_of 1)\", \"Port\": 8080}"
  wait_until 20 "the listener to be served by dc1" lb_says "in dc1"
  on 1 curl -sf -X PUT "http://$(ip_of 1):8500/v1/agent/service/deregister/web-host1"
  wait_until 20 "the listener to fail over to dc2 again" lb_says "in dc2"
  echo "failover and failback: ok"
  say "killing host3, dc2's first WAN member"
  kill -KILL "${AGENT_PID[3]}"
  for _ in 1 2 3 4 5; do dc2_web; done
  echo "reads of dc2 from host2 keep working through host4"
  say "unknown datacenter"
  code=$(on 2 curl -s -o /dev/null -w '%{http_code}' "http://$(ip_of 2):8500/v1/catalog/nodes?dc=dc9")
  [[ $code == 500 ]]
  echo "?dc=dc9 answers $code: $(on 2 curl -s "http://$(ip_of 2):8500/v1/catalog/nodes?dc=dc9")"
  say "all good"
  exit 0
fi

NS2=$(ns 2)
cat <<EOF

================================================================================================
 Two datacenters are running. In another terminal (as root), from host2 (dc1, LAN only):

   ip netns exec $NS2 curl -s "$(ip_of 2):8500/v1/catalog/datacenters"
   ip netns exec $NS2 curl -s "$(ip_of 2):8500/v1/health/service/web?dc=dc2" | python3 -m json.tool
   ip netns exec $NS2 dig @$(ip_of 2) -p 8600 web.service.dc2.rumor SRV
   while sleep 0.5; do ip netns exec $NS2 curl -s --max-time 1 127.0.0.1:9000/; done

 Kill dc2's first WAN member (its agent is PID ${AGENT_PID[3]}) and the reads go through host4.
 Agent logs: $WORK/host{1..5}.log.  Press Enter (or Ctrl-C) to stop everything.
================================================================================================
EOF
read -r _ || true
