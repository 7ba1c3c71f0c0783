"""``rumor acl``: read the agent's ACL policies and tokens; add or remove them in its config.

Policies and tokens live in the agent's config files (there are no ACL servers). ``create`` and
``delete`` edit ``acl.json`` in the ``-config-dir`` the agent reads, then ask it to reload
(``PUT /v1/agent/reload``; SIGHUP to the agent's pid when that endpoint is missing and the agent
runs on this host). If the agent refuses the new file, the file is put back as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from ..acl_policy import Policy, PolicyError
from ..cli import client_of, client_parser, flag, print_json, print_table
from ..client import APIError, Client
from ..datadir import atomic_write

ACL_FILE = "acl.json"

EPILOG = """examples:
  rumor acl policy list
  rumor acl policy create -name web -rules @web.hcl -config-dir /etc/rumor.d
  rumor acl token create -description ci -policy-name web -config-dir /etc/rumor.d
  rumor acl token read -self
  rumor acl token list
"""


def register(sub: Any) -> None:
    p = sub.add_parser("acl", help="ACL policies and tokens (list, read, create, delete)",
                       description="ACL policies and tokens of the agent", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="acl_kind", metavar="policy|token")
    pol = kinds.add_parser("policy", help="ACL policies",
                           description="ACL policies (Consul's rules language)")
    psub = pol.add_subparsers(dest="acl_command", metavar="SUBCOMMAND")
    c = client_parser(psub, "list", "list the policies (needs acl:read)")
    c.set_defaults(func=policy_list)
    c = client_parser(psub, "read", "show one policy with its rules (needs acl:read)",
                      "examples:\n  rumor acl policy read -name web\n"
                      "  rumor acl policy read -id 3c2f...")
    flag(c, "name", help="the policy's name")
    flag(c, "id", help="the policy's ID")
    c.set_defaults(func=policy_read)
    c = client_parser(psub, "create", "add a policy to the agent's config and reload it",
                      "example:\n  rumor acl policy create -name web -description 'web team' "
                      "-rules @web.hcl -config-dir /etc/rumor.d")
    flag(c, "name", required=True, help="unique policy name")
    flag(c, "description", default="", help="free text")
    flag(c, "rules", required=True, metavar="RULES|@FILE",
         help="the rules (HCL or JSON), or @FILE to read them from a file, or @- from stdin")
    _config_dir_flag(c)
    c.set_defaults(func=policy_create)
    c = client_parser(psub, "delete", "remove a policy from acl.json and reload the agent")
    flag(c, "name", required=True, help="the policy's name")
    _config_dir_flag(c)
    c.set_defaults(func=policy_delete)
    pol.set_defaults(func=lambda args: (pol.print_help(), 1)[1])

    tok = kinds.add_parser("token", help="ACL tokens", description="ACL tokens")
    tsub = tok.add_subparsers(dest="acl_command", metavar="SUBCOMMAND")
    c = client_parser(tsub, "list", "list the tokens (needs acl:read; secrets need acl:write)")
    c.set_defaults(func=token_list)
    c = client_parser(tsub, "read", "show a token",
                      "examples:\n  rumor acl token read -self\n"
                      "  rumor acl token read -accessor-id 5e1d...")
    flag(c, "self", action="store_true", help="the token this command sends (-token)")
    flag(c, "accessor-id", help="the token's AccessorID (needs acl:read)")
    c.set_defaults(func=token_read)
    c = client_parser(tsub, "create", "add a token to the agent's config and reload it",
                      "example:\n  rumor acl token create -description ci -policy-name web "
                      "-config-dir /etc/rumor.d")
    flag(c, "description", default="", help="free text")
    flag(c, "policy-name", action="append", default=[], metavar="NAME",
         help="a policy of the token (repeatable)")
    flag(c, "secret", default="", help="the secret (default: a random UUID)")
    flag(c, "accessor", default="", help="the AccessorID (default: a random UUID)")
    _config_dir_flag(c)
    c.set_defaults(func=token_create)
    c = client_parser(tsub, "delete", "remove a token from acl.json and reload the agent")
    flag(c, "accessor-id", required=True, help="the token's AccessorID")
    _config_dir_flag(c)
    c.set_defaults(func=token_delete)
    tok.set_defaults(func=lambda args: (tok.print_help(), 1)[1])
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _config_dir_flag(p: argparse.ArgumentParser) -> None:
    flag(p, "config-dir", required=True, metavar="DIR",
         help=f"a -config-dir of the agent; the change goes to {ACL_FILE} there")


# --- reading ------------------------------------------------------------------------------------


def policy_list(args: argparse.Namespace) -> int:
    data = client_of(args).get("/v1/acl/policies")
    if args.json:
        print_json(data)
        return 0
    print_table([(p["Name"], p["ID"], p["Description"]) for p in data],
                ("Name", "ID", "Description"))
    return 0


def policy_read(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.id):
        print("Error: give one of -name or -id", file=sys.stderr)
        return 1
    path = f"/v1/acl/policy/name/{args.name}" if args.name else f"/v1/acl/policy/{args.id}"
    p = client_of(args).get(path)
    if args.json:
        print_json(p)
        return 0
    print(f"ID:           {p['ID']}\nName:         {p['Name']}\n"
          f"Description:  {p['Description']}\nRules:\n{p['Rules']}")
    return 0


def _show_token(t: dict[str, Any]) -> None:
    print(f"AccessorID:       {t['AccessorID']}\nSecretID:         {t['SecretID']}\n"
          f"Description:      {t['Description']}\nLocal:            {str(t['Local']).lower()}")
    print("Policies:")
    for p in t.get("Policies") or []:
        print(f"   {p['ID']} - {p['Name']}")


def token_list(args: argparse.Namespace) -> int:
    data = client_of(args).get("/v1/acl/tokens")
    if args.json:
        print_json(data)
        return 0
    for i, t in enumerate(data):
        if i:
            print()
        _show_token(t)
    return 0


def token_read(args: argparse.Namespace) -> int:
    if args.self == bool(args.accessor_id):
        print("Error: give one of -self or -accessor-id", file=sys.stderr)
        return 1
    path = "/v1/acl/token/self" if args.self else f"/v1/acl/token/{args.accessor_id}"
    t = client_of(args).get(path)
    if args.json:
        print_json(t)
    else:
        _show_token(t)
    return 0


# --- writing the config file ----------------------------------------------------------------------


def _load(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise _Refused(f"-config-dir {directory}: not a directory")
    path = directory / ACL_FILE
    if not path.exists():
        return {"acl": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise _Refused(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("acl", {}), dict):
        raise _Refused(f'{path}: expected {{"acl": {{...}}}}')
    data.setdefault("acl", {})
    return data


class _Refused(Exception):
    pass


def _apply(args: argparse.Namespace, change: Any) -> int:
    """Change acl.json with ``change(acl_section)``, reload the agent, roll back on refusal."""
    directory = Path(args.config_dir)
    path = directory / ACL_FILE
    try:
        data = _load(directory)
        before = path.read_bytes() if path.exists() else None
        result = change(data["acl"])
    except _Refused as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
    client = client_of(args)
    try:
        _reload(client)
    except APIError as e:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, before, mode=0o600)
        try:
            _reload(client)
        except APIError:
            pass
        print(f"Error: the agent refused the change ({e.text}); {path} is back as it was",
              file=sys.stderr)
        return 1
    if isinstance(result, dict) and "AccessorID" in result:
        try:        # the agent's view of the new token (policy IDs), if this token may read it
            shown = client.get(f"/v1/acl/token/{result['AccessorID']}")
            if isinstance(shown, dict) and shown.get("SecretID") == result["SecretID"]:
                result = shown
        except APIError:
            pass
    if args.json:
        print_json(result)
    elif isinstance(result, dict) and "SecretID" in result:
        _show_token(result)
    else:
        print(result)
    return 0


def _reload(client: Client) -> None:
    try:
        client.request("PUT", "/v1/agent/reload")
    except APIError as e:
        if e.status not in (404, 405):
            raise
        # an agent without the reload endpoint: SIGHUP, when it runs on this host
        pid = int(client.get("/v1/agent/self")["Stats"]["agent"]["pid"])
        os.kill(pid, signal.SIGHUP)


def _read_rules(value: str) -> str:
    if value == "@-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as e:
            raise _Refused(f"-rules {value}: cannot read it ({e.strerror})") from None
    return value


def policy_create(args: argparse.Namespace) -> int:
    def change(acl: dict[str, Any]) -> Any:
        rules = _read_rules(args.rules)
        try:
            Policy.parse(args.name, rules)
        except PolicyError as e:
            raise _Refused(str(e)) from None
        policies = acl.setdefault("policies", [])
        if any(p.get("name") == args.name for p in policies if isinstance(p, dict)):
            raise _Refused(f"a policy named {args.name!r} is already in {ACL_FILE}")
        entry = {"name": args.name, "description": args.description, "rules": rules,
                 "id": str(uuid.uuid4())}
        policies.append(entry)
        return {"ID": entry["id"], "Name": args.name, "Description": args.description,
                "Rules": rules} if args.json else f"policy {args.name} created ({entry['id']})"
    return _apply(args, change)


def policy_delete(args: argparse.Namespace) -> int:
    def change(acl: dict[str, Any]) -> Any:
        policies = acl.get("policies") or []
        kept = [p for p in policies if not (isinstance(p, dict) and p.get("name") == args.name)]
        if len(kept) == len(policies):
            raise _Refused(f"no policy named {args.name!r} in {ACL_FILE}")
        acl["policies"] = kept
        return True if args.json else f"policy {args.name} deleted"
    return _apply(args, change)


def token_create(args: argparse.Namespace) -> int:
    def change(acl: dict[str, Any]) -> Any:
        entry = {"accessor_id": args.accessor or str(uuid.uuid4()),
                 "secret_id": args.secret or str(uuid.uuid4()),
                 "description": args.description, "policies": list(args.policy_name)}
        acl.setdefault("token_list", []).append(entry)
        return {"AccessorID": entry["accessor_id"], "SecretID": entry["secret_id"],
                "Description": args.description, "Local": True,
                "Policies": [{"ID": "", "Name": n} for n in args.policy_name]}
    return _apply(args, change)


def token_delete(args: argparse.Namespace) -> int:
    def change(acl: dict[str, Any]) -> Any:
        tokens = acl.get("token_list") or []
        kept = [t for t in tokens
                if not (isinstance(t, dict) and t.get("accessor_id") == args.accessor_id)]
        if len(kept) == len(tokens):
            raise _Refused(f"no token with AccessorID {args.accessor_id!r} in {ACL_FILE}")
        acl["token_list"] = kept
        return True if args.json else f"token {args.accessor_id} deleted"
    return _apply(args, change)
