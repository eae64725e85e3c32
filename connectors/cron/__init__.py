"""Cron source: invokes functions on their schedules."""
