"""Signals of ComfyWeb's own processes, for apps to hook into without importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent (no arguments) by `manage.py qcluster`'s leader once its cluster runs: an
# app that must queue work at start (a killed cluster took its queued jobs with
# it) listens.
cluster_started = Signal()

# Sent (no arguments) by the container scheduler (`servers.containers.tending`) when
# a pool's containers or its decision changed: the pages that show them listen.
containers_changed = Signal()

# Sent (no arguments) by `manage.py monitor` before it starts watching: the tasks
# app dispatches from the monitor's process, which sees slots free first.
monitor_started = Signal()
