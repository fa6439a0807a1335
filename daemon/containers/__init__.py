"""Container lifecycle: records and names, create/start/stop/remove, restart policy, the runtime spec,
attach, views, logs, top, stats, cp and export."""
