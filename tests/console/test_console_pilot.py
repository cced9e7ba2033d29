"""Pilot tests: every binding and flow of the console, asserting behaviour (what the store holds,
what the screen shows), fed by messages or driven through a real store."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Markdown

from operator_tui.actions import decisions
from operator_tui.store import Store
from screens.actions import ActionsScreen
from screens.approval import ApprovalModal
from screens.audit import AuditScreen
from screens.cluster import ClusterScreen
from screens.messages import AuditLoaded, ClusterUpdate, StoreUpdate, TicketDetailLoaded
from screens.tickets import TicketDetailScreen, TicketsScreen
from tests.console import samples
from tests.console.conftest import SIZE, awaiting_action, fed_app, open_ticket, store_app, until, until_async
from widgets.agent_log import AgentLog
from widgets.incident_timeline import IncidentTimeline
from widgets.keyed_table import KeyedTable
from widgets.node_grid import NodeGrid, NodeTile
from widgets.status import Banner, KeyBar, NavBar, StatusBar, TooSmall
from widgets.workload import WorkloadPanel


def _cluster(obs=None, tick=5, active=(), series=None, opened=()) -> ClusterUpdate:
    return ClusterUpdate(obs or samples.healthy_observation(), tick, list(active), list(opened), [],
                         series if series is not None else samples.series(60))


# -- screens and keys ------------------------------------------------------------------------------


async def test_number_keys_switch_screens_and_the_nav_bar_follows() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ClusterScreen)
        for key, cls, mode in (("2", TicketsScreen, "tickets"), ("3", ActionsScreen, "actions"),
                               ("4", AuditScreen, "audit"), ("1", ClusterScreen, "cluster")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, cls)
            assert app.screen.query_one(NavBar).view.active == mode


async def test_every_screen_binding_is_in_the_footer() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        for key in ("1", "2", "3", "4"):
            await pilot.press(key)
            await pilot.pause()
            shown = {b.key for (_, b, enabled, _) in app.screen.active_bindings.values() if b.show}
            assert {"ctrl+k", "1", "2", "3", "4", "p", "q"} <= shown, shown
            keys = str(app.screen.query_one(KeyBar).render())
            for label in ("^k Kill switch", "1 Cluster", "2 Tickets", "3 Actions", "4 Audit", "p Approvals",
                          "q Quit", "^p Commands"):
                assert label in keys, (label, keys)


async def test_palette_switches_screens_and_sets_mode_and_approval(db_path: Path) -> None:
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.policy is not None, what="first store poll")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"go tickets")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TicketsScreen), what="tickets screen")
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press(*"mode obs")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.state.policy.mode == "observe", what="mode observe")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"approval risky")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.state.policy.approval == "risky", what="approval risky")
    async with await Store.open(db_path) as store:
        settings = await store.get_settings()
        assert settings["mode"] == "observe" and settings["approval"] == "risky"
        kinds = [e.kind for e in await store.list_audit(limit=10)]
        assert kinds.count("setting.changed") >= 2


# -- cluster ---------------------------------------------------------------------------------------


async def test_cluster_grid_shows_health_and_the_ticket_tile_stands_out() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(_cluster(samples.degraded_observation(), active=[samples.ticket(5)]))
        await pilot.pause()
        tiles = {t.view.key: t for t in app.screen.query(NodeTile)}
        assert len(tiles) == 6
        assert tiles["store:2"].has_class("-down") and tiles["store:2"].has_class("-ticket")
        assert tiles["store:2"].border_subtitle == "#5 critical"
        assert tiles["store:4"].has_class("-degraded") and not tiles["store:4"].has_class("-ticket")
        assert tiles["store:1"].has_class("-up")
        assert app.screen.query_one(WorkloadPanel).has_class("-degraded")
        # Healthy again: only the tiles whose view changed are touched.
        app.post_message(_cluster(samples.healthy_observation(), tick=6))
        await pilot.pause()
        grid = app.screen.query_one(NodeGrid)
        assert grid.updates == 5  # stores 1-5 changed; the PD tile did not
        assert not tiles["store:2"].has_class("-ticket") and tiles["store:2"].has_class("-up")
        assert not app.screen.query_one(WorkloadPanel).has_class("-degraded")


async def test_enter_on_a_ticket_tile_opens_the_ticket() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(_cluster(samples.degraded_observation(), active=[samples.ticket(5)]))
        await pilot.pause()
        await pilot.press("g")  # focus the grid: first tile
        await pilot.press("right")
        assert app.focused.view.key == "store:2"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TicketDetailScreen) and app.screen.ticket_id == 5


async def test_focus_keys_move_between_the_cluster_panels() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(_cluster(samples.degraded_observation(), active=[samples.ticket(5)]))
        await pilot.pause()
        await pilot.press("l")
        assert isinstance(app.focused, AgentLog)
        await pilot.press("t")
        assert app.focused.id == "cluster-tickets" and app.focused.cursor_key == "5"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TicketDetailScreen) and app.screen.ticket_id == 5
        await pilot.press("escape", "1", "g")
        assert isinstance(app.focused, NodeTile) and app.focused.view.key == "store:1"
        await pilot.press("down")  # one row down: the tile below (3 columns at this size)
        assert app.focused.view.key == "store:4"


async def test_agent_events_appear_in_the_agent_panel() -> None:
    from screens.messages import AgentActivity

    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(AgentActivity(1, 5, "store:2", "diagnosis", samples.DIAGNOSIS["root_cause"],
                                       samples.DIAGNOSIS))
        app.post_message(AgentActivity(1, 5, "store:2", "verification", "store_unreachable holds again",
                                       {"holds": True}))
        await pilot.pause()
        log = app.screen.query_one(AgentLog)
        assert log.last_seq == 2
        text = " ".join(log.text.split())
        assert "diagnosis" in text and "restart_node store_id=2" in text and "holds again" in text


async def test_unreachable_subject_shows_a_banner_not_a_frozen_screen() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(_cluster(samples.healthy_observation(), tick=1))
        app.post_message(_cluster(samples.unreachable_observation(), tick=2))
        await pilot.pause()
        banner = app.screen.query_one("#unreachable-banner", Banner)
        assert banner.has_class("-shown") and "UNREACHABLE" in banner.text and "connection refused" in banner.text
        assert all(t.has_class("-unknown") for t in app.screen.query(NodeTile) if t.view.key.startswith("store"))
        assert app.screen.query_one(StatusBar).view.tick == 2  # still ticking
        app.post_message(_cluster(samples.healthy_observation(), tick=3))
        await pilot.pause()
        assert not banner.has_class("-shown")


async def test_too_small_terminal_shows_a_readable_message() -> None:
    app = fed_app()
    async with app.run_test(size=(70, 20)) as pilot:
        await pilot.pause()
        assert app.screen.query_one(TooSmall).display
        assert not app.screen.query_one("#cluster-body").display
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert not app.screen.query_one(TooSmall).display
        assert app.screen.query_one("#cluster-body").display


async def test_rendering_is_paused_while_a_modal_is_open_and_catches_up_after() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(_cluster(samples.healthy_observation(stores=3), tick=1))
        await pilot.pause()
        grid = app.screen.query_one(NodeGrid)
        assert len(grid.tiles) == 4
        app.post_message(StoreUpdate(samples.policy(), [], [samples.action(4)], [samples.action(4)], []))
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        app.post_message(_cluster(samples.healthy_observation(stores=5), tick=2))
        await pilot.pause()
        assert len(grid.tiles) == 4  # not drawn under the modal
        assert app.state.tick == 2  # but the state kept up
        await pilot.press("escape")
        await pilot.pause()
        assert len(grid.tiles) == 6


# -- tickets ---------------------------------------------------------------------------------------


async def test_ticket_filters_and_in_place_updates_keep_the_cursor() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(StoreUpdate(samples.policy(), samples.tickets_mixed(), [], [], []))
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one(KeyedTable)
        assert table.row_count == 5
        await pilot.press("down", "down")
        assert table.cursor_key == "3"
        # A new ticket arrives at the top and ticket 4 changes status: updated in place, cursor on the same row.
        changed = [samples.ticket(6, entity="store:1", summary="store 1 does not answer")] + [
            t.model_copy(update={"status": "escalated"}) if t.id == 4 else t for t in samples.tickets_mixed()]
        app.post_message(StoreUpdate(samples.policy(), changed, [], [], []))
        await pilot.pause()
        assert table.row_count == 6
        assert [r.key.value for r in table.ordered_rows][:2] == ["6", "5"]
        assert table.cursor_key == "3"
        for key, expected in (("o", {"6", "5", "4", "3"}), ("r", {"2", "1"}), ("e", {"4", "3"}),
                              ("a", {"6", "5", "4", "3", "2", "1"})):
            await pilot.press(key)
            await pilot.pause()
            assert {r.key.value for r in table.ordered_rows} == expected, key
            assert app.screen.current_filter == {"o": "open", "r": "resolved", "e": "escalated", "a": "all"}[key]


async def test_ticket_detail_from_the_store_renders_the_diagnosis_and_timeline(db_path: Path, store: Store) -> None:
    run_id = await store.start_run("test", "tikv")
    ticket_id = await open_ticket(store, run_id)
    session_id = await store.claim_ticket(ticket_id, run_id, "tikv|store:2", "embedded", 1)
    await store.update_session(session_id, diagnosis=samples.DIAGNOSIS)
    await store.add_ticket_event(ticket_id, "diagnosed", "agent", {"summary": samples.DIAGNOSIS["summary"]})
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: app.screen.query_one(KeyedTable).row_count == 1, what="ticket row")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TicketDetailScreen) and app.screen.detail is not None,
                    what="detail loaded")
        detail = app.screen
        source = detail.query_one(Markdown).source
        assert "## Diagnosis (97% confident)" in source
        assert "### Root cause" in source and "TiKV process is dead" in source
        assert "### Alternatives considered" in source and "✘ **The store" in source
        assert "`restart_node`" in source
        timeline = detail.query_one(IncidentTimeline)
        assert [(e.lane, e.label.split(":")[0]) for e in timeline.events] == [
            (f"ticket #{ticket_id}", "opened"), ("agent", "claimed by the agent (attempt 1)"), ("agent", "diagnosed")]
        # The ticket changes in the store: the open detail follows (under the approval dialog it asks for).
        await awaiting_action(store, ticket_id=ticket_id, session_id=session_id)
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("escape")
        await until(pilot, lambda: "## Actions" in detail.query_one(Markdown).source, what="actions section")
        lanes = [e.lane for e in detail.query_one(IncidentTimeline).events]
        assert lanes.count("#1 restart_node") == 3  # proposed, validated, awaiting approval
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TicketsScreen)


async def test_fed_ticket_detail_shows_resolution_and_verification() -> None:
    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(StoreUpdate(samples.policy(), samples.tickets_mixed(), [], [], []))
        await pilot.press("2", "enter")
        await until(pilot, lambda: isinstance(app.screen, TicketDetailScreen), what="detail screen")
        app.screen.post_message(TicketDetailLoaded(5, samples.ticket_detail(resolved=True)))
        await pilot.pause()
        source = app.screen.query_one(Markdown).source
        assert "**✔ holds**" in source and "## Resolution" in source


# -- approvals ----------------------------------------------------------------------------------------


async def test_y_approves_through_the_store_and_the_audit_log(db_path: Path, store: Store) -> None:
    action_id = await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        assert app.screen.action.id == action_id
        await pilot.press("y")
        await until_async(pilot, lambda: _state_is(store, action_id, "approved"), what="approved")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalModal), what="modal closed")
    record = await store.get_action(action_id)
    assert record.decided_by and record.decided_by.startswith("human:")
    events = await store.list_audit(ref=f"action:{action_id}")
    assert events[-1].kind == "action.approved" and events[-1].actor == record.decided_by
    assert (await store.verify_audit())[0]


async def test_n_rejects_with_a_reason(db_path: Path, store: Store) -> None:
    action_id = await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("n")
        await pilot.pause()
        reason = app.screen.query_one("#approval-reason", Input)
        assert reason.display and reason.has_focus
        await pilot.press(*"not in the batch window")
        await pilot.press("enter")
        await until_async(pilot, lambda: _state_is(store, action_id, "rejected"), what="rejected")
    history = await store.action_transitions(action_id)
    assert history[-1].to_state == "rejected" and history[-1].reason.endswith(": not in the batch window")
    assert (await store.list_audit(ref=f"action:{action_id}"))[-1].kind == "action.rejected"


async def test_n_then_escape_goes_back_and_escape_defers_until_p(db_path: Path, store: Store) -> None:
    action_id = await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("n", "escape")
        await pilot.pause()
        assert isinstance(app.screen, ApprovalModal)
        assert not app.screen.query_one("#approval-reason", Input).display
        await pilot.press("escape")
        await pilot.pause(0.3)  # several polls: the deferred action does not pop up again
        assert not isinstance(app.screen, ApprovalModal)
        assert await _state_is(store, action_id, "awaiting_approval")
        assert app.state.status_view().awaiting == 1
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="modal again")
        await pilot.press("y")
        await until_async(pilot, lambda: _state_is(store, action_id, "approved"), what="approved")


async def test_approval_from_another_process_closes_the_modal(db_path: Path, store: Store) -> None:
    action_id = await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await decisions.approve(store, action_id, "human:someone-else")  # what `actions approve` does
        await until(pilot, lambda: not isinstance(app.screen, ApprovalModal), what="modal closed")
        await until(pilot, lambda: any("elsewhere" in line.title for line in app.state.feed), what="note")
    assert (await store.get_action(action_id)).decided_by == "human:someone-else"


async def test_approval_modal_shows_diagnosis_and_dry_run_context() -> None:
    from screens.messages import ApprovalContext

    app = fed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(StoreUpdate(samples.policy(), [], [samples.action(4)], [samples.action(4)], []))
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        app.screen.post_message(ApprovalContext(4, "restart_node", samples.DIAGNOSIS, None,
                                                {"preview": "POST /sim/v1/stores/2/restart", "problems": [],
                                                 "blocked": None}))
        await pilot.pause()
        text = str(app.screen.query_one("#approval-context").render())
        assert "97% confident" in text and "precheck passes" in text and "bring the dead TiKV process back" in text


# -- kill switch -------------------------------------------------------------------------------------


async def test_kill_switch_key_writes_the_setting_and_shows_the_banner(db_path: Path, store: Store) -> None:
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.policy is not None, what="first poll")
        for key in ("2", "3", "4"):  # from any screen
            await pilot.press(key, "ctrl+k")
            await until_async(pilot, lambda: _killswitch(store, True), what="engaged")
            banner = app.screen.query_one("#killswitch-banner", Banner)
            assert banner.has_class("-shown") and "KILL SWITCH ENGAGED" in banner.text
            assert app.screen.query_one(StatusBar).view.killswitch
            await pilot.press("ctrl+k")
            await until_async(pilot, lambda: _killswitch(store, False), what="released")
            await until(pilot, lambda b=banner: not b.has_class("-shown"), what="banner hidden")
    kinds = [e.data.get("key") for e in await store.list_audit(limit=20) if e.kind == "setting.changed"]
    assert kinds.count("killswitch") == 6


async def test_kill_switch_from_the_approval_modal_cancels_and_closes_it(db_path: Path, store: Store) -> None:
    action_id = await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("ctrl+k")  # a priority binding: works over the modal
        await until_async(pilot, lambda: _state_is(store, action_id, "cancelled"), what="cancelled")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalModal), what="modal closed")
        assert app.screen.query_one("#killswitch-banner", Banner).has_class("-shown")


# -- actions and audit ---------------------------------------------------------------------------------


async def test_actions_screen_lists_states_reviews_and_cancels(db_path: Path, store: Store) -> None:
    first = await awaiting_action(store, store_id=2)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("escape", "3")
        await until(pilot, lambda: app.screen.query_one("#actions-table", KeyedTable).row_count == 1, what="row")
        history = app.screen.query_one("#actions-history", KeyedTable)
        await until(pilot, lambda: history.row_count == 3, what="state history")
        await pilot.press("enter")  # awaiting: opens the dialog again
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="modal from the table")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("x")
        await until_async(pilot, lambda: _state_is(store, first, "cancelled"), what="cancelled")
        table = app.screen.query_one("#actions-table", KeyedTable)
        await until(pilot, lambda: "cancelled" in str(table.get_row("1")[1]), what="row shows cancelled")


async def test_audit_screen_shows_events_and_chain_status(db_path: Path, store: Store) -> None:
    await awaiting_action(store)
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="approval modal")
        await pilot.press("escape", "4")
        table = app.screen.query_one("#audit-table", KeyedTable)
        await until(pilot, lambda: table.row_count == 3, what="3 audit events")
        chain = app.screen.query_one("#audit-chain")
        await until(pilot, lambda: "chain intact" in str(chain.render()), what="chain verified")
        app.screen.post_message(AuditLoaded(samples.audit_events(3), False, 2, "event 3 was altered"))
        await pilot.pause()
        assert "CHAIN BROKEN" in str(chain.render())
        await pilot.press("v")
        await until(pilot, lambda: "chain intact" in str(chain.render()), what="verified again")


# -- quitting ----------------------------------------------------------------------------------------


async def test_q_closes_the_store(db_path: Path) -> None:
    app = store_app(db_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.store is not None and app.state.policy is not None, what="store open")
        store = app.store
        await pilot.press("q")
        await pilot.pause()
    assert store.db.closed
    assert app.return_code == 0


async def _state_is(store: Store, action_id: int, state: str) -> bool:
    record = await store.get_action(action_id)
    return record is not None and record.state == state


async def _killswitch(store: Store, engaged: bool) -> bool:
    return bool(((await store.get_settings()).get("killswitch") or {}).get("engaged")) == engaged
