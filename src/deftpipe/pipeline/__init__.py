"""The three-phase bridge: consolidated pre-flight, handoffs, Phase 3 warm start, final selection (SPEC §7)."""
