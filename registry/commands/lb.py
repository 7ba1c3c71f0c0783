"""``rumor lb add|remove|list``: manage the agent's load-balancer listeners over the HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cli import client_of, client_parser, flag, print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser("lb", help="manage load-balancer listeners (add, remove, list)",
                       description="manage the agent's load-balancer listeners",
                       epilog="examples:\n  rumor lb add -name web -bind 127.0.0.1:9000 -mode http "
                              "-service web\n  rumor lb list\n  rumor lb remove web",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = p.add_subparsers(dest="lb_command", metavar="SUBCOMMAND")

    a = client_parser(
        lsub, "add", "create or replace a listener",
        "examples:\n"
        "  rumor lb add -name web -bind 127.0.0.1:9000 -mode http -service web\n"
        "  rumor lb add -name db -bind 127.0.0.1:5433 -service postgres -strategy least_conn\n"
        "  rumor lb add -name edge -bind 127.0.0.1:8080 -mode http -urlprefix "
        "-route /api=api -route shop.example.com/=shop\n"
        "  rumor lb add -name web-tls -bind 127.0.0.1:8443 -mode http -service web "
        "-tls-cert web.pem -tls-key web-key.pem -tls-cert api.pem -tls-key api-key.pem\n"
        "  rumor lb add -name web-redirect -bind 127.0.0.1:8080 -mode http "
        "-redirect-https 8443\n"
        "  rumor lb add -name api -bind 127.0.0.1:9001 -mode http -service api "
        "-backend-tls -backend-ca-file ca.pem -backend-server-name api.internal")
    flag(a, "name", required=True, help="unique listener name")
    flag(a, "bind", required=True, metavar="IP:PORT", help="address to listen on")
    flag(a, "mode", default="tcp", choices=("tcp", "http"), help="tcp (default) or http")
    flag(a, "service", default="", help="catalog service whose healthy instances get traffic")
    flag(a, "tag", default=None, help="only instances with this tag")
    flag(a, "strategy", default="round_robin",
         help="round_robin (default), least_conn, random, weighted_round_robin")
    flag(a, "proxy-protocol", default=None, choices=("v1", "v2"),
         help="send a PROXY protocol header to backends (in http mode backend "
              "connections are then kept per client connection)")
    flag(a, "route", action="append", default=[], metavar="[HOST]/PATH=SERVICE",
         help="http mode: route a host and path prefix to a service (repeatable)")
    flag(a, "urlprefix", action="store_true",
         help="http mode: also route by fabio-style urlprefix- tags of all services")
    flag(a, "passing-only", action="store_true", help="skip instances whose checks warn")
    flag(a, "max-connections", type=int, default=None, help="client connections at once")
    flag(a, "idle-timeout", default=None, metavar="DURATION", help='tcp idle timeout ("5m")')
    flag(a, "connect-timeout", default=None, metavar="DURATION",
         help='backend connect timeout ("2s")')
    flag(a, "tls-cert", action="append", default=[], metavar="FILE",
         help="terminate TLS with this PEM certificate (repeatable, paired in order with "
              "-tls-key; chosen by SNI, the first is the default)")
    flag(a, "tls-key", action="append", default=[], metavar="FILE",
         help="the PEM private key of the -tls-cert at the same position")
    flag(a, "tls-min-version", default=None, choices=("TLSv1.2", "TLSv1.3"),
         help="oldest TLS version accepted (default TLSv1.2)")
    flag(a, "backend-tls", action="store_true", help="speak TLS to the backends")
    flag(a, "backend-ca-file", default=None, metavar="FILE",
         help="CA that signs the backends' certificates (default: the system's)")
    flag(a, "backend-server-name", default=None, metavar="NAME",
         help="name to send as SNI and check in the backends' certificates")
    flag(a, "backend-skip-verify", action="store_true",
         help="do not verify the backends' certificates")
    flag(a, "backend-tls-tagged-only", action="store_true",
         help="TLS only to instances registered with the 'tls' tag")
    flag(a, "redirect-https", type=int, default=None, metavar="PORT",
         help="http mode: answer every request with a 308 redirect to https on PORT")
    a.set_defaults(func=add)

    r = client_parser(lsub, "remove", "remove a listener (open connections drain)",
                      "example:\n  rumor lb remove web")
    r.add_argument("name", help="listener name")
    r.set_defaults(func=remove)

    ls = client_parser(lsub, "list", "list listeners with their counters and backends",
                       "examples:\n  rumor lb list\n  rumor lb list -backends\n"
                       "  rumor lb list -json")
    flag(ls, "backends", action="store_true", help="also list each listener's backends")
    ls.set_defaults(func=list_)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def add(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {"Name": args.name, "Bind": args.bind, "Mode": args.mode,
                            "Service": args.service, "Strategy": args.strategy}
    if args.tag:
        spec["Tag"] = args.tag
    if args.proxy_protocol:
        spec["ProxyProtocol"] = args.proxy_protocol
    if args.route:
        spec["Routes"] = args.route
    if args.urlprefix:
        spec["URLPrefix"] = True
    if args.passing_only:
        spec["PassingOnly"] = True
    if args.max_connections is not None:
        spec["MaxConnections"] = args.max_connections
    if args.idle_timeout:
        spec["IdleTimeout"] = args.idle_timeout
    if args.connect_timeout:
        spec["ConnectTimeout"] = args.connect_timeout
    if args.tls_cert or args.tls_key:
        if len(args.tls_cert) != len(args.tls_key):
            print("error: give one -tls-key for each -tls-cert, in the same order",
                  file=sys.stderr)
            return 1
        spec["TLS"] = {"Certificates": [{"CertFile": c, "KeyFile": k}
                                        for c, k in zip(args.tls_cert, args.tls_key,
                                                        strict=True)]}
        if args.tls_min_version:
            spec["TLS"]["MinVersion"] = args.tls_min_version
    backend_opts = (args.backend_ca_file, args.backend_server_name, args.backend_skip_verify,
                    args.backend_tls_tagged_only)
    if args.backend_tls or any(backend_opts):
        spec["BackendTLS"] = {"CAFile": args.backend_ca_file or "",
                              "ServerName": args.backend_server_name or "",
                              "SkipVerify": args.backend_skip_verify,
                              "TaggedOnly": args.backend_tls_tagged_only}
    if args.redirect_https is not None:
        spec["RedirectHTTPS"] = {"Port": args.redirect_https}
        if spec.get("Service") == "":
            del spec["Service"]
    info = client_of(args).put("/v1/lb/listener", spec)
    if args.json:
        print_json(info)
    else:
        scheme = "https" if info.get("TLS") else info["Mode"]
        if info.get("RedirectHTTPS"):
            print(f"listener {info['Name']} on {info['Address']} (http) redirects to https "
                  f"port {info['RedirectHTTPS']['Port']}")
        else:
            print(f"listener {info['Name']} on {info['Address']} ({scheme}) -> "
                  f"{info['Service'] or 'routes'}: {len(info['Backends'])} backend(s)")
    return 0


def remove(args: argparse.Namespace) -> int:
    client_of(args).request("DELETE", f"/v1/lb/listener/{args.name}")
    if not args.json:
        print(f"listener {args.name} removed; open connections drain")
    else:
        print_json(True)
    return 0


def list_(args: argparse.Namespace) -> int:
    data = client_of(args).get("/v1/lb/listeners") or []
    if args.json:
        print_json(data)
        return 0
    rows = []
    for li in data:
        c = li["Counters"]
        rows.append((li["Name"], li["Address"], li["Mode"], li["Service"] or "(routes)",
                     li["Strategy"], len(li["Backends"]), c["Active"], c["Connections"],
                     c["Requests"], c["Errors"]))
    print_table(rows, ("Name", "Address", "Mode", "Service", "Strategy", "Backends", "Active",
                       "Conns", "Requests", "Errors"))
    if args.backends:
        for li in data:
            print(f"\n{li['Name']}:")
            print_table([(b["Service"], f"{b['Address']}:{b['Port']}", b["Node"], b["Weight"],
                          b["Active"], b["Requests"], b["Errors"], b["Ejections"],
                          "draining" if b["Draining"] else ("ejected" if b["Ejected"] else "up"))
                         for b in li["Backends"]],
                        ("Service", "Address", "Node", "Weight", "Active", "Requests", "Errors",
                         "Ejections", "State"))
    return 0
