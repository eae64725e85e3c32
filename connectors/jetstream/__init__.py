"""How ferry talks to NATS: one settings group, one connect function, stream and bucket set-up.

Every NATS user (queue worker, front door, cron claims, the shell commands) goes through this
package, so a server list, a credential or a replica count works everywhere at once. nats-py
exceptions stop here or in the caller's own edge module; this package raises ferry's errors.
"""
