"""Container lifecycle: records, create/start/stop/remove, the runtime spec, views, logs, stats, cp."""
