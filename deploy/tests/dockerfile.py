"""deploy/Dockerfile and .dockerignore read as data: instructions by stage, and which
paths of the repository the build context holds (Docker's .dockerignore rules)."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined, comments and blank lines dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    return out


def stages(text: str) -> list[Stage]:
    out: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            out.append(Stage(parts[0], name))
        elif out:
            out[-1].instructions.append(ins)
    return out


def global_args(text: str) -> dict[str, str]:
    """ARGs before the first FROM, with their defaults."""
    out = {}
    for ins in instructions(text):
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            k, _, v = ins.args.partition("=")
            out[k] = v
    return out


def stage_args(stage: Stage) -> dict[str, str]:
    return {k: v for k, _, v in (i.args.partition("=") for i in stage.instructions if i.keyword == "ARG")}


def expand(s: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), s)


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None for the build context, sources, destination) of each COPY."""
    out = []
    for ins in stage.instructions:
        if ins.keyword != "COPY":
            continue
        words = shlex.split(ins.args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append((source, paths[:-1], paths[-1]))
    return out


def env(stage: Stage) -> dict[str, str]:
    out = {}
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                k, _, v = word.partition("=")
                out[k] = v
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args)


# ---------------------------------------------------------------------------------------
# .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax (Go's filepath.Match, plus `**` for any number of folders)."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out)


class DockerIgnore:
    def __init__(self, text: str):
        self.rules: list[tuple[bool, re.Pattern, str]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.rules.append((negate, _pattern_regex(pattern), pattern))

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context's root) is left out: the last rule that
        matches it or one of its parent folders decides."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for negate, rx, _ in self.rules:
            if any(rx.fullmatch(p) for p in prefixes):
                verdict = not negate
        return verdict

    def may_include_below(self, folder: str) -> bool:
        """Whether some `!` rule could let in a path below an excluded `folder`."""
        return any(neg and (raw.startswith(folder + "/") or raw.startswith("**")) for neg, _, raw in self.rules)

    def context(self, root: Path) -> list[str]:
        """Every file of `root` the build context holds, relative to it."""
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [
                d for d in dirnames if not self.excluded(rel + d) or self.may_include_below(rel + d)
            ]
            out.extend(rel + f for f in filenames if not self.excluded(rel + f))
        return sorted(out)
