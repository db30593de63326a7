"""The one backend layer every service's stores use: DSN parsing (:mod:`.dsn`), opening Postgres pools
(:mod:`.postgres`), Redis clients (:mod:`.redis`) and SQLite files (:mod:`.sqlite`), the migration runner
(:mod:`.migrations`) and the "the backend is down" classifier (:mod:`.errors`).

Modules that need an optional driver (asyncpg, redis) import it themselves; importing this package does not.
"""
