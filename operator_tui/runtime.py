"""Wiring shared by the console, headless runs and CLI commands: the store, the subject (and its
embedded simulated cluster when allowed and no endpoint is given), the run, the policy.

Against a real cluster (anything the subject does not identify as a simulator or a local lab)
the approval policy defaults to `risky` the first time a store meets one: high and destructive
actions then wait for a human until someone chooses otherwise (`--approval`, `operator-tui approval`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from operator_tui.config import CoreSettings, read_audit_key
from operator_tui.errors import UserError
from operator_tui.policy import human_actor, set_approval, set_mode
from operator_tui.store import Store
from subjects import registry
from subjects.base import ClusterIdentity, Subject, identify
from subjects.plugin import PluginError, SubjectContext, load

log = logging.getLogger("operator_tui.runtime")


async def start_embedded(settings: CoreSettings, purpose: str, allow: bool) -> tuple[Any, Any]:
    """(the subject's settings section, the embedded cluster or None). Starts the subject's
    embedded simulated cluster when the section names nothing to watch and `allow` says so;
    refuses with what to pass instead when it does not."""
    plugin = registry.plugin(settings.subject)
    section = settings.section()
    if plugin.embedded is None:
        return section, None
    embedded = load(plugin.embedded)()
    missing = embedded.missing(section)
    if missing is None:
        return section, None
    if not allow:
        raise UserError(missing)
    handle = await embedded.start(section, SubjectContext(settings.lab_folder(), purpose))
    log.info("embedded %s cluster at %s", settings.subject, handle.endpoint)
    return handle.section, handle


async def build_subject(settings: CoreSettings, section: Any, purpose: str) -> Subject:
    plugin = registry.plugin(settings.subject)
    try:
        return await load(plugin.build)(section, SubjectContext(settings.lab_folder(), purpose))
    except (PluginError, ValueError, OSError) as e:
        raise UserError(f"cannot set up the {settings.subject} subject: {e}") from e


def chaos_options(settings: CoreSettings, subject: str, section: Any | None = None) -> dict[str, Any]:
    """Where a subject's faults go (its lab, or the cluster the section names)."""
    plugin = registry.plugin(subject)
    module = load(plugin.chaos)
    try:
        return module.options(section if section is not None else settings.section(subject),
                              SubjectContext(settings.lab_folder(subject)))
    except PluginError as e:
        raise UserError(str(e)) from e


@dataclass
class Runtime:
    settings: CoreSettings
    store: Store
    subject: Subject
    run_id: int
    section: Any = None  # the subject's settings, pointing at the embedded cluster when one runs
    embedded: Any = None  # the embedded cluster's handle, when we started one
    closers: list[Any] = field(default_factory=list)
    attached: bool = False  # the run was created by someone else (an eval trial) and stays theirs to end
    identity: ClusterIdentity | None = None

    @property
    def cluster(self) -> str | None:
        return self.identity.id if self.identity is not None else None

    @property
    def endpoint(self) -> str | None:
        return self.embedded.endpoint if self.embedded is not None else None

    @classmethod
    async def open(cls, settings: CoreSettings, kind: str, *, with_subject: bool = True,
                   allow_embedded: bool | None = None, attach_run: int | None = None) -> Runtime:
        """`allow_embedded`: start the embedded simulated cluster when no endpoint is given
        (default: only when --sim was passed). `attach_run`: work under this existing run (an eval
        trial's) instead of starting one; --mode and --approval then set that run's own policy."""
        allow = settings.sim if allow_embedded is None else allow_embedded
        store = await Store.open(settings.db, audit_key=read_audit_key(settings))
        embedded = subject = None
        try:
            section = settings.section()
            if with_subject:
                section, embedded = await start_embedded(settings, kind, allow)
            subject = await build_subject(settings, section, kind) if with_subject else None
            identity = await identify(subject) if subject is not None else None
            if attach_run is None:
                run_id = await store.start_run(kind, settings.subject,
                                               _run_config(settings, section, embedded, identity),
                                               cluster=identity.id if identity else None)
            else:
                run = await store.get_run(attach_run)
                if run is None or run.ended_at is not None:
                    raise UserError(f"run {attach_run} does not exist or has ended: nothing to attach to")
                if run.subject != settings.subject:
                    raise UserError(f"run {attach_run} watches {run.subject}, not {settings.subject}")
                run_id = attach_run
            actor = human_actor()
            for_run = attach_run
            if settings.mode is not None:
                await set_mode(store, settings.mode, actor, run_id, for_run=for_run)
            if settings.approval is not None:
                await set_approval(store, settings.approval, actor, run_id, for_run=for_run)
            elif attach_run is None and subject is not None and (identity is None or identity.real) \
                    and await store.get_setting("approval") is None:
                # (An attached run's policy is its owner's: an eval trial sets the run's own.)
                await set_approval(store, "risky", "system", run_id)
                log.info("approval defaults to risky against a real cluster (%s)",
                         identity.detail if identity else subject.display)
            return cls(settings, store, subject, run_id, section, embedded, attached=attach_run is not None,
                       identity=identity)
        except BaseException:
            if subject is not None:
                await subject.aclose()
            if embedded is not None:
                await embedded.stop()
            await store.close()
            raise

    def chaos_options(self) -> dict[str, Any]:
        return chaos_options(self.settings, self.settings.subject, self.section)

    async def close(self, status: str = "completed") -> None:
        try:
            if not self.attached:
                await self.store.end_run(self.run_id, status)
        finally:
            try:
                if self.subject is not None:
                    await self.subject.aclose()
            finally:
                if self.embedded is not None:
                    await self.embedded.stop()
                await self.store.close()


def _run_config(settings: CoreSettings, section: Any, embedded: Any,
                identity: ClusterIdentity | None = None) -> dict[str, Any]:
    return {"subject": settings.subject, settings.subject: section.model_dump(mode="json"),
            "embedded": embedded.endpoint if embedded is not None else None,
            "agent": settings.agent, "interval": settings.interval,
            "cluster": identity.model_dump() if identity is not None else None}
