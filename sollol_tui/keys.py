"""The dashboard's keys: each a Binding with an id (``sollol.*``, usable in a keymap) and a tooltip.

The footer, the help screen and the command palette are all built from this one list.
"""

from __future__ import annotations

from textual.binding import Binding

from sollol_core.config import STRATEGIES

KEYS: list[Binding] = [
    Binding("question_mark", "help", "Help", key_display="?", id="sollol.help",
            tooltip="List every key and what it does."),
    Binding("q", "quit", "Quit", id="sollol.quit",
            tooltip="Stop the gateway gracefully and leave."),
    Binding("d", "toggle_drain", "Drain", id="sollol.drain",
            tooltip="Drain the selected host (it finishes what it has and takes nothing new), "
                    "or put a draining host back."),
    Binding("plus", "change_priority(1)", "Prio+", key_display="+", id="sollol.priority-up",
            tooltip="Priority rank of the selected host +1 (0 is tried first, so it gets fewer requests)."),
    Binding("minus", "change_priority(-1)", "Prio-", key_display="-", id="sollol.priority-down",
            tooltip="Priority rank of the selected host -1 (towards 0, tried first)."),
    Binding("n", "edit_slots", "Slots", id="sollol.slots",
            tooltip="Set the selected host's slots (its OLLAMA_NUM_PARALLEL: requests one model runs at once; "
                    "the rest wait in the gateway), or empty for the default."),
    Binding("w", "edit_weights", "Weights", id="sollol.weights",
            tooltip="Edit the scoring weights of the performance strategy."),
    Binding("s", "cycle_strategy", "Strategy", id="sollol.strategy",
            tooltip=f"Switch to the next routing strategy ({' → '.join(STRATEGIES)})."),
    Binding("slash", "filter_requests", "Filter", key_display="/", id="sollol.filter",
            tooltip="Filter the request log by any text."),
    Binding("a", "add_host", "Add", id="sollol.add-host",
            tooltip="Add an Ollama host to the cluster."),
    Binding("x", "remove_host", "Remove", id="sollol.remove-host",
            tooltip="Remove the selected host from the cluster (asks first)."),
    Binding("b", "trigger_batch", "Batch", id="sollol.batch",
            tooltip="Run the batch queue now instead of at the next interval."),
    Binding("c", "toggle_sim_clients", "Clients", id="sollol.sim-clients",
            tooltip="Start or stop the simulated clients that send demo traffic (--demo only)."),
    Binding("t", "pick_theme", "Theme", id="sollol.theme",
            tooltip="Pick a colour theme."),
    Binding("1", "show_tab('requests-tab')", "Requests", show=False, id="sollol.tab-requests",
            tooltip="Show the request log in the lower half."),
    Binding("2", "show_tab('batch-tab')", "Batch queue", show=False, id="sollol.tab-batch",
            tooltip="Show the batch queue: depth, jobs with progress, docs/s."),
    Binding("3", "show_tab('log-tab')", "Log", show=False, id="sollol.tab-log",
            tooltip="Show the log (what also goes to the log file)."),
    Binding("4", "show_tab('queue-tab')", "Queue", show=False, id="sollol.tab-queue",
            tooltip="Show the gateway queue: waiting requests per class, admitted and rejected, and every client."),
    Binding("ctrl+s", "save_config", "Save", id="sollol.save",
            tooltip="Save the running configuration to sollol.toml (the previous file is kept as sollol.toml.bak)."),
]

# Actions that act on the dashboard, so not while a dialog is open (quit stays: ctrl+q must always work).
DASHBOARD_ACTIONS = frozenset(b.action.split("(")[0] for b in KEYS) - {"quit"}
