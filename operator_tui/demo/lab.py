"""The demo's own cluster, through the subject's plug-in: its embedded simulated cluster when it
has one (the runtime starts and stops it), else its local lab, brought up in a folder of its own
on free ports and brought down when the demo ends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from operator_tui.errors import UserError
from subjects import registry
from subjects.plugin import PluginError, load

log = logging.getLogger("operator_tui.demo")


class DemoLab:
    def __init__(self, subject: str, folder: Path, options: dict[str, Any], lab_dir: Path):
        self.subject = subject
        self.folder = folder  # this subject's lab folder inside the demo's lab directory
        self.options = options
        self.lab_dir = lab_dir
        plugin = registry.plugin(subject)
        self.lab = load(plugin.lab) if plugin.embedded is None and plugin.lab is not None else None
        self.up = False
        self.problem = ""  # why `stop` could not bring it down cleanly

    async def start(self) -> list[str]:
        """Bring the lab up (nothing to do for an embedded cluster: the runtime starts that)."""
        if self.lab is None:
            return []
        if await self._still_up():
            raise UserError(f"a {self.subject} lab is already up in {self.folder} (another demo, or one that was "
                            f"killed): stop it with `operator-tui lab down {self.subject} --lab-dir {self.lab_dir}`")
        # Up from here on: a demo stopped while the lab starts brings down what started (the lab's
        # lock makes that `down` wait for the `up` still running in its thread).
        self.up = True
        try:
            report = await asyncio.to_thread(self.lab.up, self.folder, {**self.options, "free_ports": True})
        except PluginError as e:
            self.up = False  # a failed `up` leaves nothing behind
            raise UserError(f"cannot start the demo's {self.subject} lab: {e}") from e
        log.info("demo lab up in %s", self.folder)
        return report.lines

    async def load(self, on: bool) -> str:
        if self.lab is None or not callable(getattr(self.lab, "load", None)):
            raise UserError(f"the {self.subject} demo cluster has no load to start")
        try:
            report = await asyncio.to_thread(self.lab.load, self.folder, on)
        except PluginError as e:
            raise UserError(str(e)) from e
        return str(report.data.get("outcome", "done"))

    async def stop(self) -> list[str]:
        """Bring the lab down if this demo brought it up; safe to call more than once."""
        if not self.up or self.lab is None:
            return []
        self.up = False
        try:
            report = await asyncio.to_thread(self.lab.down, self.folder)
        except PluginError as e:
            if not await self._still_up():
                return []  # its start failed (while the demo was stopping) and left nothing
            log.warning("demo lab down: %s", e)
            self.problem = str(e)  # something survived: said after the console closes
            return [self.problem]
        log.info("demo lab down: %s", "; ".join(report.lines))
        return report.lines

    async def _still_up(self) -> bool:
        try:
            return bool((await asyncio.to_thread(self.lab.status, self.folder)).data.get("up"))
        except PluginError:
            return False  # no lab there
