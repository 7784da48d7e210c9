"""The server wing: what the dashboard and the HTTP API share in one process. `service` has one function per
user action (the faces call nothing else for heavy work); `stores` the one dataset store, run cache and memory
budget; `admission` the budget that measures the process; `cache` and `datasets` what is kept on disk."""
