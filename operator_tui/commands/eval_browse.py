"""`operator-tui eval browse [ID]`: the console on its Eval screen, on the store alone."""

from __future__ import annotations

import argparse
import asyncio


def run(args: argparse.Namespace) -> int:
    from operator_tui.app import make_app, run_app
    from operator_tui.commands.common import open_existing_store
    from operator_tui.config import load_settings
    from operator_tui.errors import UserError

    settings = load_settings(args)
    campaign_id = args.campaign_id

    async def check() -> None:
        store = await open_existing_store(settings)
        try:
            if campaign_id is not None and await store.get_campaign(campaign_id) is None:
                known = [c.id for c in await store.list_campaigns(limit=20)]
                raise UserError(f"no campaign {campaign_id} in {settings.db}"
                                + (f" (campaigns: {', '.join(map(str, sorted(known)))})" if known
                                   else " (it has no campaign yet)"))
        finally:
            await store.close()

    if campaign_id is not None and campaign_id < 1:
        raise UserError(f"a campaign id is a positive number, got {campaign_id}")
    asyncio.run(check())
    return run_app(settings, make_app(settings, live=False, open_store=True, mode="eval",
                                      browse_campaign=campaign_id))
