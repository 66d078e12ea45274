"""``ctrbid serve`` on the simulation clock, on free ports, for the runs that play
``ctrbid exchange`` against it (the loop, ``loop.py``; the campaign economics,
``loadtest/economics.py``).

The bidder prints ``listening on http://… (admin http://…)`` as its first line of
stdout; :class:`Bidder` reads both addresses from it and copies the rest of stdout and
all of stderr to a log file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTED = re.compile(r"listening on (http://\S+).*\(admin (http://[^;\s)]+)")


class Bidder:
    """One bidder with ``flags`` (``--catalog``, ``--model``, ...) and its event log in
    ``events``, until :meth:`stop`. Notices are signed with ``notice_key``."""

    def __init__(self, binary: str | Path, events: Path, log_path: Path, flags: list,
                 notice_key: str, config: str = "deploy/ctrbid.toml"):
        self.cmd = [str(binary), "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen",
                    "127.0.0.1:0", "--clock", "simulation", "--events-dir", str(events), *map(str, flags)]
        print(f"[bidder] {' '.join(self.cmd)}", file=sys.stderr, flush=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "ab")
        env = {**os.environ, "CTRBID_NOTICE_KEY": notice_key}
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self.proc.stdout.readline().decode(errors="replace")
        m = STARTED.search(line)
        if not m:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise RuntimeError(f"the bidder did not start ({line.strip()!r}): see {log_path}")
        self.url, self.admin = m.group(1), m.group(2)
        self.log.write(line.encode())
        self.log.flush()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the process has run so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET on the admin port; (0, error) when none came."""
        try:
            with urllib.request.urlopen(self.admin + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return 0, str(e)

    def stop(self) -> None:
        """SIGTERM: the bidder drains and closes its event log; killed after 60 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            self.log.close()
