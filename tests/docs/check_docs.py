#!/usr/bin/env python3
"""Fails when the project's documentation names something that does not
exist: an RPC (Service.Method) missing from proto/, an `ipsrt` command the
built CLI does not list, a `make` target missing from the Makefile, or a
repository path (engine/..., tests/..., ...) that is not in the tree.

Usage: check_docs.py REPO_ROOT IPSRT_BINARY
Reads README.md, docs/*.md and every README.md below the top-level folders.
Prints one line per finding (file:line: what) and exits 1 if there is any.
"""
import pathlib
import re
import subprocess
import sys

TOP_DIRS = ("engine", "plugins", "proto", "tests", "bench", "workflows",
            "config", "docs", "scripts", "packaging", ".ci")


def documents(root):
    yield root / "README.md"
    yield from sorted((root / "docs").glob("*.md"))
    for top in TOP_DIRS:
        base = root / top
        if base.is_dir():
            for p in sorted(base.rglob("README.md")):
                if "node_modules" not in p.parts:
                    yield p


def rpcs(root):
    """Service -> set of rpc names, from every .proto under proto/."""
    services = {}
    for proto in (root / "proto").rglob("*.proto"):
        current = None
        for line in proto.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*service\s+(\w+)", line)
            if m:
                current = services.setdefault(m.group(1), set())
                continue
            m = re.match(r"\s*rpc\s+(\w+)\s*\(", line)
            if m and current is not None:
                current.add(m.group(1))
    return services


def cli_commands(ipsrt):
    out = subprocess.run([ipsrt, "help"], capture_output=True, text=True,
                         check=False).stdout
    names = set()
    in_list = False
    for line in out.splitlines():
        if line.startswith("Commands:"):
            in_list = True
            continue
        if in_list:
            m = re.match(r"  (\S+)\s", line)
            if not m:
                break
            names.add(m.group(1))
    return names


def make_targets(root):
    text = (root / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    services = rpcs(root)
    commands = cli_commands(sys.argv[2])
    targets = make_targets(root)
    if not services or not commands or not targets:
        print("check_docs: found no services, commands or make targets; "
              "the checker itself is broken")
        return 1
    findings = []
    checked = {"rpc": 0, "command": 0, "make": 0, "path": 0}
    # Service.Method, in backticks or prose; only our own services.
    rpc_re = re.compile(r"\b([A-Z]\w*Service)\.([A-Z]\w*)\b")
    # `ipsrt COMMAND` / `make TARGET` at the start of a code span, after a
    # shell prompt, or at the start of a line inside a fenced code block.
    cli_re = re.compile(r"(?:`|\$ )ipsrt ([a-z][a-z-]*)\b")
    make_re = re.compile(r"(?:`|\$ )make ([a-z][a-z0-9_-]*)\b")
    cli_block_re = re.compile(r"^\s*ipsrt ([a-z][a-z-]*)\b")
    make_block_re = re.compile(r"^\s*make ([a-z][a-z0-9_-]*)\b")
    path_re = re.compile(
        r"`((?:%s)/[A-Za-z0-9_./-]*[A-Za-z0-9_])/?`" %
        "|".join(re.escape(t) for t in TOP_DIRS))
    for doc in documents(root):
        rel = doc.relative_to(root)
        in_block = False
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(),
                                 1):
            where = f"{rel}:{n}"
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            for service, method in rpc_re.findall(line):
                checked["rpc"] += 1
                if service not in services:
                    findings.append(f"{where}: no service {service} in "
                                    "proto/")
                    continue
                if method not in services[service]:
                    findings.append(f"{where}: no rpc {service}.{method} in "
                                    "proto/")
            found_commands = cli_re.findall(line)
            found_targets = make_re.findall(line)
            if in_block:
                found_commands += cli_block_re.findall(line)
                found_targets += make_block_re.findall(line)
            for command in found_commands:
                checked["command"] += 1
                if command not in commands:
                    findings.append(f"{where}: `ipsrt {command}` is not a "
                                    "command of the built ipsrt")
            for target in found_targets:
                checked["make"] += 1
                if target not in targets:
                    findings.append(f"{where}: `make {target}` is not a "
                                    "Makefile target")
            for path in path_re.findall(line):
                if any(c in path for c in "<>*{}") or ".." in path:
                    continue
                checked["path"] += 1
                if not (root / path).exists():
                    findings.append(f"{where}: `{path}` does not exist")
    for f in findings:
        print(f)
    print(f"check_docs: {len(findings)} finding(s) in "
          f"{checked['rpc']} RPC, {checked['command']} command, "
          f"{checked['make']} make and {checked['path']} path references; "
          f"{len(services)} services, {len(commands)} commands, "
          f"{len(targets)} make targets known")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
