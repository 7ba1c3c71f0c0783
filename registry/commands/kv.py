"""``rumor kv``: read and write the KV store (Consul's ``consul kv get/put/delete/export/import``).

``export`` prints a JSON list of ``{"key", "flags", "value"}`` with base64 values, the format
``consul kv export`` writes; ``import`` reads that format from a file, from ``-`` (stdin), or
from the argument itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.parse
from typing import Any

from ..cli import client_of, client_parser, flag, print_json
from ..client import APIError

EPILOG_GET = """examples:
  rumor kv get app/config                 # the value
  rumor kv get -detailed app/config       # with flags and indexes
  rumor kv get -recurse app/              # every key under app/ as key:value
  rumor kv get -keys -separator / app/    # the keys one level under app/
"""


def _path(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe="/")


def _params(args: argparse.Namespace, **params: str | int | None) -> dict[str, str | int | None]:
    """Query parameters with ``dc`` added when ``-datacenter`` names another datacenter."""
    if args.datacenter:
        params["dc"] = args.datacenter
    return params


def _dc_flag(p: argparse.ArgumentParser) -> None:
    flag(p, "datacenter", metavar="DC",
         help="this datacenter's keyspace (default: the agent's; each datacenter has its own)")


def register(sub: Any) -> None:
    kv = sub.add_parser("kv", help="read and write the KV store",
                        description="Read and write the KV store (replicated by gossip, last "
                        "writer wins; see docs/comparison.md).")
    kvsub = kv.add_subparsers(dest="kv_command", metavar="SUBCOMMAND")
    kv.set_defaults(func=lambda args: (kv.print_help(), 1)[1])

    g = client_parser(kvsub, "get", "print a value, or the keys under a prefix", EPILOG_GET)
    g.add_argument("key", nargs="?", default="")
    flag(g, "recurse", action="store_true", help="every key under the prefix, as key:value")
    flag(g, "keys", action="store_true", help="list keys under the prefix")
    flag(g, "separator", default="/", metavar="SEP",
         help="with -keys: stop at this separator (default /)")
    flag(g, "detailed", action="store_true", help="show flags and indexes too")
    _dc_flag(g)
    g.set_defaults(func=run_get)

    p = client_parser(kvsub, "put", "write a value",
                      "examples:\n  rumor kv put app/config '{\"debug\": true}'\n"
                      "  rumor kv put app/cert @cert.pem    # the value from a file\n"
                      "  rumor kv put app/token -           # the value from stdin\n")
    p.add_argument("key")
    p.add_argument("value", nargs="?", default="")
    flag(p, "flags", type=int, default=0, metavar="N", help="an unsigned 64-bit number to store")
    flag(p, "base64", action="store_true", help="the value is base64-encoded")
    _dc_flag(p)
    p.set_defaults(func=run_put)

    d = client_parser(kvsub, "delete", "delete a key, or every key under a prefix")
    d.add_argument("key", nargs="?", default="")
    flag(d, "recurse", action="store_true", help="every key under the prefix")
    _dc_flag(d)
    d.set_defaults(func=run_delete)

    e = client_parser(kvsub, "export", "print keys under a prefix as JSON (consul kv export)")
    e.add_argument("prefix", nargs="?", default="")
    _dc_flag(e)
    e.set_defaults(func=run_export)

    i = client_parser(kvsub, "import", "write keys from JSON written by export")
    i.add_argument("data", nargs="?", default="-",
                   help="the JSON, @FILE, or - for stdin (default)")
    flag(i, "prefix", default="", metavar="PREFIX", help="add this prefix to every key")
    _dc_flag(i)
    i.set_defaults(func=run_import)


def _read_arg(value: str) -> bytes:
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        with open(value[1:], "rb") as f:
            return f.read()
    return value.encode()


def run_get(args: argparse.Namespace) -> int:
    c = client_of(args)
    try:
        if args.keys:
            keys = c.get(_path(args.key),
                         params=_params(args, keys="", separator=args.separator or None))
            if args.json:
                print_json(keys)
            else:
                for k in keys:
                    print(k)
            return 0
        entries = c.get(_path(args.key),
                        params=_params(args, recurse="") if args.recurse else _params(args))
    except APIError as e:
        if e.status == 404:
            if args.recurse or args.keys:
                return 0
            print(f"Error! No key exists at: {args.key}", file=sys.stderr)
            return 1
        raise
    if args.json:
        print_json(entries)
        return 0
    for ent in entries:
        val = base64.b64decode(ent["Value"]).decode(errors="replace") if ent["Value"] else ""
        if args.detailed:
            for field in ("CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex"):
                print(f"{field:<14}{ent[field]}")
            print(f"{'Value':<14}{val}")
        elif args.recurse:
            print(f"{ent['Key']}:{val}")
        else:
            sys.stdout.write(val)
            if not val.endswith("\n"):
                sys.stdout.write("\n")
    return 0


def run_put(args: argparse.Namespace) -> int:
    data = _read_arg(args.value)
    if args.base64:
        try:
            data = base64.b64decode(data, validate=True)
        except ValueError:
            print("Error! the value is not valid base64", file=sys.stderr)
            return 1
    c = client_of(args)
    c.request("PUT", _path(args.key), params=_params(args, flags=args.flags or None), raw=data)
    print(f"Success! Data written to: {args.key}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    c = client_of(args)
    c.request("DELETE", _path(args.key),
              params=_params(args, recurse="") if args.recurse else _params(args))
    print(f"Success! Deleted key{'s under' if args.recurse else ''}: {args.key}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    c = client_of(args)
    try:
        entries = c.get(_path(args.prefix), params=_params(args, recurse=""))
    except APIError as e:
        if e.status != 404:
            raise
        entries = []
    print_json([{"key": e["Key"], "flags": e["Flags"], "value": e["Value"] or ""}
                for e in entries])
    return 0


def run_import(args: argparse.Namespace) -> int:
    raw = _read_arg(args.data)
    try:
        items = json.loads(raw)
        if not isinstance(items, list) or not all(
                isinstance(x, dict) and isinstance(x.get("key"), str) for x in items):
            raise ValueError("expected a list of {\"key\", \"flags\", \"value\"} objects")
        values = [(args.prefix + x["key"], int(x.get("flags") or 0),
                   base64.b64decode(x.get("value") or "", validate=True)) for x in items]
    except ValueError as e:
        print(f"Error! cannot read the import data: {e}", file=sys.stderr)
        return 1
    c = client_of(args)
    for key, flags, data in values:
        c.request("PUT", _path(key), params=_params(args, flags=flags or None), raw=data)
        print(f"Imported: {key}")
    return 0
