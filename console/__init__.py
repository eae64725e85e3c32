"""The web console (`/system/console/` on `ferry gateway`, or `ferry console` alone): pages that
show calls, queues, dead letters and schedules, and forms that cancel, replay and purge.
It reads the call ledger (`ledger`), the queue and dead letters (`asyncq`) and cron schedules
(`connectors.cron`'s parser); it imports neither the front door nor the worker."""
