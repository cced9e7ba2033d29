"""The store's schema as an ordered list of forward migrations.

`PRAGMA user_version` holds how many have been applied. Never edit a released migration: append
a new one. A file whose version is newer than this list is refused, not guessed at.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: runs, tickets and their history, metric samples
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        pid INTEGER,
        host TEXT,
        config TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        invariant TEXT NOT NULL,
        entity TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '{}',
        opened_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        resolved_at TEXT,
        occurrences INTEGER NOT NULL DEFAULT 1,
        resolution TEXT,
        updated_at TEXT NOT NULL
    );
    -- one active ticket per invariant and entity within a run: the dedup rule
    CREATE UNIQUE INDEX tickets_active_dedup ON tickets(run_id, dedup_key)
        WHERE status IN ('open', 'investigating', 'escalated');
    CREATE INDEX tickets_by_run ON tickets(run_id, id);
    CREATE TABLE ticket_events (
        id INTEGER PRIMARY KEY,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT,
        actor TEXT NOT NULL DEFAULT 'system',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX ticket_events_by_ticket ON ticket_events(ticket_id, id);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        at TEXT NOT NULL,
        entity TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX samples_by_series ON samples(run_id, entity, metric, id);
    """,
    # 2: settings (policy, kill switch), actions and their transitions, the audit chain
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
    );
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ticket_id INTEGER REFERENCES tickets(id),
        session_id INTEGER,
        workflow_id TEXT,
        step INTEGER NOT NULL DEFAULT 0,
        name TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        target TEXT NOT NULL DEFAULT '',
        risk TEXT NOT NULL,
        idempotent INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        requested_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        delay_s REAL NOT NULL DEFAULT 0,
        not_before TEXT,
        expires_at TEXT,
        cancel_requested TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        decided_by TEXT,
        decided_at TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0,
        owner_pid INTEGER,
        preview TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX actions_by_state ON actions(state, id);
    CREATE INDEX actions_by_ticket ON actions(ticket_id, id);
    CREATE INDEX actions_by_workflow ON actions(workflow_id, step);
    CREATE TABLE action_transitions (
        id INTEGER PRIMARY KEY,
        action_id INTEGER NOT NULL REFERENCES actions(id),
        at TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX action_transitions_by_action ON action_transitions(action_id, id);
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        run_id INTEGER,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    -- the chain's head, so that removing the newest events is detected too
    CREATE TABLE audit_head (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        last_id INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    );
    """,
    # 3: agent sessions (one per attempt at a ticket) and their steps
    """
    CREATE TABLE agent_sessions (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        entity TEXT NOT NULL,
        claim_key TEXT NOT NULL,
        diagnoser TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        diagnosis TEXT,
        verification TEXT,
        outcome TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        owner_pid INTEGER
    );
    -- one running session per entity of a subject, across processes: the claim rule
    CREATE UNIQUE INDEX agent_sessions_one_per_entity ON agent_sessions(claim_key) WHERE status = 'running';
    CREATE INDEX agent_sessions_by_ticket ON agent_sessions(ticket_id, id);
    CREATE TABLE agent_steps (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES agent_sessions(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        content TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX agent_steps_by_session ON agent_steps(session_id, id);
    """,
    # 4: injected faults, each with what undoes it
    """
    CREATE TABLE faults (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        record TEXT NOT NULL,
        status TEXT NOT NULL,
        injected_at TEXT NOT NULL,
        reverted_at TEXT,
        revert_detail TEXT,
        actor TEXT NOT NULL
    );
    """,
    # 5: safety under the operator's own faults: who a run's process is (PID, start time, PID
    # namespace, boot) and which cluster it watches; whether an action's request may have been
    # sent, and what its reconciliation needs; HMACs of audit events under a key kept elsewhere
    """
    ALTER TABLE runs ADD COLUMN cluster TEXT;
    ALTER TABLE runs ADD COLUMN proc_start INTEGER;
    ALTER TABLE runs ADD COLUMN pid_ns TEXT;
    ALTER TABLE runs ADD COLUMN boot_id TEXT;
    ALTER TABLE actions ADD COLUMN cluster TEXT;
    ALTER TABLE actions ADD COLUMN sent_at TEXT;
    ALTER TABLE actions ADD COLUMN checkpoint TEXT;
    ALTER TABLE audit_events ADD COLUMN mac TEXT;
    ALTER TABLE audit_head ADD COLUMN mac TEXT;
    CREATE INDEX runs_open ON runs(ended_at);
    """,
    # 6: the evaluation harness: campaigns, variants, scenarios, trials (each trial is its own run),
    # faults with their write-ahead undo, harness events, oracle checks, workload buckets, comparisons.
    # Times of a trial are nanoseconds on the monotonic clock since the trial's origin (*_ns, t_*_ns),
    # with the origin's wall time on the trial so that wall UTC rows (tickets, actions) convert.
    """
    CREATE TABLE eval_campaigns (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        spec_yaml TEXT NOT NULL DEFAULT '',
        spec_sha256 TEXT NOT NULL DEFAULT '',
        root_seed INTEGER NOT NULL DEFAULT 0,
        git_rev TEXT NOT NULL DEFAULT '',
        git_dirty INTEGER NOT NULL DEFAULT 0,
        packages_json TEXT NOT NULL DEFAULT '{}',
        host_json TEXT NOT NULL DEFAULT '{}',
        parallel INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL DEFAULT 'planned',
        verdict TEXT,
        exit_code INTEGER,
        resumed_from INTEGER REFERENCES eval_campaigns(id),
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE TABLE eval_variants (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES eval_campaigns(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        config_json TEXT NOT NULL DEFAULT '{}',
        config_sha256 TEXT NOT NULL DEFAULT '',
        UNIQUE (campaign_id, name)
    );
    CREATE TABLE eval_scenarios (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES eval_campaigns(id),
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        lab_json TEXT NOT NULL DEFAULT '{}',
        workload_json TEXT NOT NULL DEFAULT '{}',
        faults_json TEXT NOT NULL DEFAULT '[]',
        oracle_json TEXT NOT NULL DEFAULT '{}',
        ground_truth_json TEXT NOT NULL DEFAULT '{}',
        budgets_json TEXT NOT NULL DEFAULT '{}',
        spec_sha256 TEXT NOT NULL DEFAULT '',
        UNIQUE (campaign_id, name)
    );
    CREATE TABLE eval_trials (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES eval_campaigns(id),
        scenario_id INTEGER NOT NULL REFERENCES eval_scenarios(id),
        variant_id INTEGER NOT NULL REFERENCES eval_variants(id),
        seed_index INTEGER NOT NULL DEFAULT 0,
        repeat INTEGER NOT NULL DEFAULT 0,
        pair_key TEXT NOT NULL,
        seed INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        slot INTEGER NOT NULL DEFAULT 0,
        run_id INTEGER NOT NULL UNIQUE REFERENCES runs(id),
        ident TEXT NOT NULL,
        phase TEXT NOT NULL DEFAULT 'planned',
        outcome TEXT,
        valid TEXT NOT NULL DEFAULT 'unknown',
        error_json TEXT,
        t_origin_mono_ns INTEGER,
        t_origin_wall REAL,
        phases_json TEXT NOT NULL DEFAULT '[]',
        metrics_json TEXT NOT NULL DEFAULT '{}',
        final_observation_json TEXT,
        lab_manifest_json TEXT,
        lab_state TEXT NOT NULL DEFAULT 'none',
        artifacts_dir TEXT NOT NULL DEFAULT '',
        harness_pid INTEGER,
        harness_start_time INTEGER,
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX eval_trials_by_campaign ON eval_trials(campaign_id, id);
    CREATE TABLE eval_faults (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES eval_trials(id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        target_entity TEXT,
        spec_json TEXT NOT NULL DEFAULT '{}',
        affected_json TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'planned',
        invoke_ns INTEGER,
        applied_ns INTEGER,
        effect_verified_ns INTEGER,
        revert_invoke_ns INTEGER,
        reverted_ns INTEGER,
        revert_verified_ns INTEGER,
        undo_json TEXT NOT NULL,
        verify_json TEXT NOT NULL DEFAULT '{}',
        revert_attempts INTEGER NOT NULL DEFAULT 0,
        UNIQUE (trial_id, seq)
    );
    CREATE TABLE eval_events (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES eval_trials(id),
        t_mono_ns INTEGER NOT NULL,
        t_wall TEXT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX eval_events_by_trial ON eval_events(trial_id, t_mono_ns);
    CREATE TABLE eval_oracle_checks (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES eval_trials(id),
        t_mono_ns INTEGER NOT NULL,
        check_name TEXT NOT NULL,
        entity TEXT NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL DEFAULT 'health'
    );
    CREATE INDEX eval_oracle_checks_by_trial ON eval_oracle_checks(trial_id, t_mono_ns);
    CREATE TABLE eval_workload_buckets (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES eval_trials(id),
        t_bucket_ns INTEGER NOT NULL,
        t_wall REAL NOT NULL,
        planned INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        fail INTEGER NOT NULL,
        indeterminate INTEGER NOT NULL DEFAULT 0,
        lat_p50_ms REAL,
        lat_p99_ms REAL,
        over_slo_latency INTEGER NOT NULL DEFAULT 0,
        slo_ok INTEGER NOT NULL DEFAULT 1,
        UNIQUE (trial_id, t_wall)
    );
    CREATE TABLE eval_comparisons (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES eval_campaigns(id),
        scope TEXT NOT NULL,
        variant_a TEXT NOT NULL,
        variant_b TEXT NOT NULL,
        metric TEXT NOT NULL,
        n_pairs INTEGER NOT NULL,
        estimate REAL,
        ci_lo REAL,
        ci_hi REAL,
        method TEXT NOT NULL DEFAULT '',
        p REAL,
        p_holm REAL,
        decision TEXT NOT NULL DEFAULT ''
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
