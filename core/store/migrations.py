"""The database schema as numbered migrations (sqlite-utils ``Migrations``).

An applied migration is never edited: a schema change is a new function at the end.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["MIGRATIONS"]

MIGRATIONS = Migrations("threadline")


@MIGRATIONS()
def m001_objects(db: Database) -> None:
    """Channels, threads, messages, runs and run steps: the Assistants object model."""
    db.table("channels").create(
        {
            "key": str,  # platform:workspace:channel
            "platform": str,
            "workspace": str,
            "channel_id": str,
            "assistant": str,  # null: the default assistant
            "thread_id": str,  # the current thread
            "created_at": float,
        },
        pk="key",
    )
    db.table("threads").create(
        {"id": str, "channel": str, "created_at": float, "closed_at": float, "metadata": str},
        pk="id",
        foreign_keys=[("channel", "channels", "key")],
    )
    db.table("threads").create_index(["channel"])
    db.table("messages").create(
        {
            "id": int,
            "thread_id": str,
            "channel": str,
            # Messages are ordered by (turn_id, id): a user message opens its own turn and
            # everything a run writes joins the turn of the message it answers.
            "turn_id": int,
            "role": str,
            "text": str,
            "item": str,  # the model input item (JSON) replayed as context
            "tokens": int,
            "author_id": str,
            "author_name": str,
            "platform_msg_id": str,
            "run_id": str,
            "created_at": float,
        },
        pk="id",
        not_null={"thread_id", "channel", "role", "item"},
        foreign_keys=[("thread_id", "threads", "id")],
    )
    db.table("messages").create_index(["thread_id", "turn_id", "id"])
    db.table("messages").create_index(["channel", "platform_msg_id"], unique=True)
    db.table("runs").create(
        {
            "id": str,
            "thread_id": str,
            "channel": str,
            "assistant": str,
            "model": str,
            "status": str,
            "trigger_message_id": int,
            "created_at": float,
            "started_at": float,
            "completed_at": float,
            "last_error": str,
            "input_tokens": int,
            "output_tokens": int,
            "total_tokens": int,
        },
        pk="id",
        defaults={"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        foreign_keys=[("thread_id", "threads", "id")],
    )
    db.table("runs").create_index(["thread_id", "status"])
    db.table("runs").create_index(["status"])
    db.table("run_steps").create(
        {
            "id": str,
            "run_id": str,
            "type": str,  # message_creation | tool_calls
            "status": str,  # in_progress | completed | failed | cancelled | expired
            "tool_name": str,
            "call_id": str,
            "arguments": str,
            "output": str,
            "created_at": float,
            "completed_at": float,
            "duration_ms": int,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("run_steps").create_index(["run_id"])


@MIGRATIONS()
def m002_approvals_and_summary(db: Database) -> None:
    """Paused runs survive restarts; threads keep a rolling summary of what left the context window."""
    db.table("runs").add_column("state_json", str)  # the paused openai-agents RunState
    db.table("runs").add_column("notified", int, not_null_default=0)
    db.table("threads").add_column("summary", str)
    db.table("threads").add_column("summary_turn_id", int)  # the summary covers messages up to
    db.table("threads").add_column("summary_message_id", int)  # (turn_id, id) inclusive
    db.table("approvals").create(
        {
            "id": str,
            "run_id": str,
            "call_id": str,
            "tool_name": str,
            "arguments": str,
            "status": str,  # pending | approved | denied | expired
            "created_at": float,
            "expires_at": float,
            "decided_by": str,
            "decided_at": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("approvals").create_index(["run_id"])
    db.table("approvals").create_index(["status"])


@MIGRATIONS()
def m003_knowledge(db: Database) -> None:
    """Each channel's knowledge base: files, their chunks, a full-text index and embeddings."""
    db.table("files").create(
        {
            "id": str,
            "channel": str,
            "name": str,
            "size": int,
            "sha256": str,
            "mime": str,
            "kind": str,
            "status": str,  # in_progress | completed | failed
            "error": str,  # why it failed, for people
            "uploader_id": str,
            "uploader_name": str,
            "platform_file_id": str,
            "link": str,
            "pages": int,
            "chunk_count": int,
            "created_at": float,
            "completed_at": float,
        },
        pk="id",
        defaults={"chunk_count": 0},
    )
    db.table("files").create_index(["channel", "sha256"])
    db.table("files").create_index(["channel", "name"])
    db.table("files").create_index(["channel", "platform_file_id"])
    db.table("chunks").create(
        {"id": int, "file_id": str, "channel": str, "ordinal": int, "location": str, "text": str, "tokens": int},
        pk="id",
        foreign_keys=[("file_id", "files", "id")],
    )
    db.table("chunks").create_index(["file_id"])
    db.table("chunks").create_index(["channel"])
    # BM25 over chunk text; triggers keep it in step with the chunks table.
    db.table("chunks").enable_fts(["text"], fts_version="FTS5", create_triggers=True, tokenize="porter unicode61")
    db.table("embeddings").create(
        {"chunk_id": int, "channel": str, "model": str, "dim": int, "vector": bytes},  # little-endian float32
        pk="chunk_id",
        foreign_keys=[("chunk_id", "chunks", "id")],
    )
    db.table("embeddings").create_index(["channel", "model"])


@MIGRATIONS()
def m004_file_contents(db: Database) -> None:
    """The bytes of each indexed file, once per content: the code interpreter works on the originals."""
    db.table("file_contents").create({"sha256": str, "data": bytes}, pk="sha256")


@MIGRATIONS()
def m005_assistants_api(db: Database) -> None:
    """The Assistants-compatible API: assistants owned by API keys, and the old API's thread and message fields.

    Every message gets a public id (``msg_...``) however it was written: existing rows now, new rows by a
    trigger, so the run loop's writes need no change to be addressable over the API.
    """
    db.table("assistants").create(
        {
            "id": str,  # asst_...
            "owner": str,  # the API key's owner id (a hash of the key, never the key)
            "created_at": float,
            "name": str,
            "description": str,
            "instructions": str,
            "model": str,
            "tools": str,  # JSON list, as the API takes it
            "tool_resources": str,  # JSON object or null
            "metadata": str,  # JSON object
            "temperature": float,
            "top_p": float,
            "response_format": str,  # JSON ("auto" or an object) or null
        },
        pk="id",
        not_null={"owner", "created_at", "model", "tools", "metadata"},
    )
    db.table("assistants").create_index(["owner"])
    db.table("threads").add_column("tool_resources", str)
    db.table("messages").add_column("public_id", str)
    db.table("messages").add_column("metadata", str)
    db.execute("UPDATE messages SET public_id = 'msg_' || lower(hex(randomblob(12))) WHERE public_id IS NULL")
    db.table("messages").create_index(["public_id"], unique=True)
    db.execute(
        "CREATE TRIGGER messages_public_id AFTER INSERT ON messages WHEN NEW.public_id IS NULL"
        " BEGIN UPDATE messages SET public_id = 'msg_' || lower(hex(randomblob(12))) WHERE id = NEW.id; END"
    )


@MIGRATIONS()
def m006_api_runs(db: Database) -> None:
    """Runs created over the Assistants-compatible API: their own assistant settings, and tool calls the client runs.

    A chat run takes its assistant from the assistants file by name; an API run carries the settings
    it was created with (``spec``: instructions, model, tools, sampling, limits), so a paused run
    resumes with exactly them after a restart. A call to a function the client defined waits in the
    approvals table (``kind`` 'client_output') until the client submits its ``output``.
    """
    runs = db.table("runs")
    runs.add_column("spec", str)  # JSON; null for chat runs
    runs.add_column("assistant_id", str)  # asst_... for API runs
    runs.add_column("metadata", str)  # JSON object
    runs.add_column("expires_at", float)
    runs.add_column("incomplete_details", str)  # JSON object or null
    approvals = db.table("approvals")
    approvals.add_column("kind", str, not_null_default="approval")  # approval | client_output
    approvals.add_column("output", str)  # what the client submitted for a client_output call


@MIGRATIONS()
def m007_api_files_and_vector_stores(db: Database) -> None:
    """Files uploaded over the Assistants-compatible API, and vector stores: each one a knowledge base of its own.

    An uploaded file is a row of ``api_files``, owned by a key; its bytes live once in
    ``file_contents`` (by SHA-256), shared with the knowledge base. A vector store's files are
    the ``files`` rows of its knowledge base, ``api:<owner>:<vector store id>``, each naming the
    uploaded file in ``platform_file_id``: indexing sets their status, and ``error_code`` keeps
    the old API's ``last_error.code``. A batch remembers which files it attached.
    """
    db.table("api_files").create(
        {
            "id": str,  # file-...
            "owner": str,
            "filename": str,
            "bytes": int,
            "sha256": str,
            "mime": str,
            "purpose": str,
            "created_at": float,
        },
        pk="id",
        not_null={"owner", "filename", "bytes", "sha256", "purpose", "created_at"},
    )
    db.table("api_files").create_index(["owner"])
    db.table("api_files").create_index(["sha256"])
    db.table("vector_stores").create(
        {
            "id": str,  # vs_...
            "owner": str,
            "knowledge_key": str,  # api:<owner>:<id>, the knowledge base's key
            "name": str,
            "description": str,
            "metadata": str,  # JSON object
            "expires_after": str,  # JSON object or null
            "created_at": float,
            "last_active_at": float,
        },
        pk="id",
        not_null={"owner", "knowledge_key", "metadata", "created_at", "last_active_at"},
    )
    db.table("vector_stores").create_index(["owner"])
    db.table("vector_store_file_batches").create(
        {"id": str, "vector_store_id": str, "created_at": float, "cancelled_at": float},
        pk="id",
        not_null={"vector_store_id", "created_at"},
        foreign_keys=[("vector_store_id", "vector_stores", "id")],
    )
    db.table("vector_store_file_batches").create_index(["vector_store_id"])
    db.table("vector_store_batch_files").create(
        {"batch_id": str, "file_id": str},
        pk=("batch_id", "file_id"),
        foreign_keys=[("batch_id", "vector_store_file_batches", "id")],
    )
    files = db.table("files")
    files.add_column("error_code", str)  # server_error | unsupported_file | invalid_file
    files.add_column("attributes", str)  # JSON object: a vector store file's attributes


@MIGRATIONS()
def m008_message_annotations(db: Database) -> None:
    """File citations of an answer, as the Assistants API annotated them (JSON list; see core/citations.py)."""
    db.table("messages").add_column("annotations", str)


@MIGRATIONS()
def m009_retention_indexes(db: Database) -> None:
    """Retention finds old conversation turns and old files by age without reading every row."""
    db.table("messages").create_index(["created_at"])
    db.table("files").create_index(["created_at"])


@MIGRATIONS()
def m010_run_actor(db: Database) -> None:
    """Who asked for a chat run (user key and roles, JSON): a run paused for approval resumes after a restart
    with the tools that person may use (core/policy.py)."""
    db.table("runs").add_column("actor", str)


@MIGRATIONS()
def m011_budgets(db: Database) -> None:
    """Budgets (core/budgets.py): limits managers set per channel or person, what running calls have
    reserved, which 80% notices were given, and what each channel and person spent per UTC day and
    month by model, kept by a trigger on runs' token counts (a budget check reads a few rows, not a
    month of runs)."""
    db.execute(
        "CREATE TABLE budget_limits (scope TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL,"
        " amount REAL, unit TEXT, set_by TEXT, set_at REAL NOT NULL, PRIMARY KEY (scope, subject, period))"
    )  # amount NULL: no limit (lifted by a manager)
    db.execute(
        "CREATE TABLE budget_holds (run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,"
        " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, updated_at REAL NOT NULL)"
    )  # a running run's expected total so far; removed when the run's usage is recorded
    db.execute(
        "CREATE TABLE budget_notices (scope TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL,"
        " period_start REAL NOT NULL, limit_text TEXT NOT NULL, created_at REAL NOT NULL,"
        " PRIMARY KEY (scope, subject, period, period_start, limit_text))"
    )
    db.execute(
        "CREATE TABLE budget_spent (scope TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL,"
        " period_start INTEGER NOT NULL, model TEXT NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0,"
        " output_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (scope, subject, period, period_start, model))"
    )
    for event, old_input, old_output in (
        ("INSERT", "0", "0"),
        ("UPDATE OF input_tokens, output_tokens", "OLD.input_tokens", "OLD.output_tokens"),
    ):
        name = "runs_spent_" + event.split()[0].lower()
        db.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON runs"
            f" WHEN COALESCE(NEW.input_tokens, 0) != COALESCE({old_input}, 0)"
            f" OR COALESCE(NEW.output_tokens, 0) != COALESCE({old_output}, 0) BEGIN"
            " INSERT INTO budget_spent (scope, subject, period, period_start, model, input_tokens, output_tokens)"
            " SELECT who.scope, who.subject, span.period, span.start, COALESCE(NEW.model, 'unknown model'),"
            f" COALESCE(NEW.input_tokens, 0) - COALESCE({old_input}, 0),"
            f" COALESCE(NEW.output_tokens, 0) - COALESCE({old_output}, 0)"
            " FROM (SELECT 'channel' AS scope, NEW.channel AS subject"
            "  UNION ALL SELECT 'user', json_extract(NEW.actor, '$.key')"
            "  WHERE COALESCE(json_extract(NEW.actor, '$.key'), '') != '') AS who,"
            " (SELECT 'day' AS period, CAST(strftime('%s', NEW.created_at, 'unixepoch', 'start of day') AS INTEGER)"
            "  AS start UNION ALL"
            "  SELECT 'month', CAST(strftime('%s', NEW.created_at, 'unixepoch', 'start of month') AS INTEGER)) AS span"
            " WHERE true ON CONFLICT (scope, subject, period, period_start, model) DO UPDATE SET"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens;"
            " END"
        )
    # what runs before this migration spent, so budgets start from the truth
    for scope, subject in (("channel", "channel"), ("user", "json_extract(actor, '$.key')")):
        for period in ("day", "month"):
            db.execute(
                "INSERT INTO budget_spent (scope, subject, period, period_start, model, input_tokens, output_tokens)"
                f" SELECT '{scope}', {subject}, '{period}',"
                f" CAST(strftime('%s', created_at, 'unixepoch', 'start of {period}') AS INTEGER) AS start,"
                " COALESCE(model, 'unknown model'), SUM(input_tokens), SUM(output_tokens) FROM runs"
                f" WHERE COALESCE({subject}, '') != '' AND (input_tokens > 0 OR output_tokens > 0)"
                " GROUP BY 2, 4, 5"
            )


@MIGRATIONS()
def m012_summary_usage(db: Database) -> None:
    """Tokens of the rolling summary's model calls made for a run: part of the run's usage (and so of
    /usage, budgets and metrics), kept apart so a later stretch of the run does not overwrite them."""
    db.table("runs").add_column("summary_input_tokens", int, not_null_default=0)
    db.table("runs").add_column("summary_output_tokens", int, not_null_default=0)


@MIGRATIONS()
def m013_message_ids_never_reused(db: Database) -> None:
    """Message ids with AUTOINCREMENT: a plain rowid is handed out again once the newest messages are
    deleted (retention with keep_last = 0, an API client deleting its last message), and an id that
    comes back would match a summary's mark or a run's trigger that meant the deleted message.

    SQLite cannot add AUTOINCREMENT to a table, so the table is rebuilt with the same columns,
    rows, indexes and triggers; ids are kept."""
    table_sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'").fetchone()[0]
    extras = [
        row[0]
        for row in db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' AND type IN ('index', 'trigger')"
            " AND sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    ]
    key = '"id" INTEGER PRIMARY KEY,'
    if key not in table_sql or not table_sql.startswith('CREATE TABLE "messages"'):
        raise RuntimeError(f"m013: the messages table is not as expected: {table_sql!r}")
    rebuilt = table_sql.replace(key, '"id" INTEGER PRIMARY KEY AUTOINCREMENT,', 1).replace(
        'CREATE TABLE "messages"', 'CREATE TABLE "messages_rebuilt"', 1
    )
    db.execute(rebuilt)
    db.execute("INSERT INTO messages_rebuilt SELECT * FROM messages")
    db.execute("DROP TABLE messages")
    db.execute("ALTER TABLE messages_rebuilt RENAME TO messages")
    for sql in extras:
        db.execute(sql)


@MIGRATIONS()
def m014_processes_and_leases(db: Database) -> None:
    """Several processes on one database: who is alive (a lease each renews), which of them queued
    a run (``origin``) and which is running it (``owner``), and notices waiting for a process that
    serves their platform (a row until it is delivered)."""
    db.table("processes").create(
        {
            "id": str,
            "pid": int,
            "host": str,  # where ``pid`` means something: hostname, boot id and pid namespace
            "started": str,  # the process's start time as the kernel counts it (pids are reused)
            "platforms": str,  # comma-separated channel platforms it serves; '*' for all
            "created_at": float,
            "lease_until": float,
        },
        pk="id",
        not_null={"id", "created_at", "lease_until"},
    )
    runs = db.table("runs")
    runs.add_column("origin", str)  # the process that queued it: its lane starts it while that process lives
    runs.add_column("owner", str)  # the process running it now (in_progress, cancelling)
    db.table("notices").create(
        {
            "id": int,
            "channel": str,
            "platform": str,
            "text": str,
            "created_at": float,
            "attempts": int,
            "claimed_by": str,
            "claimed_until": float,
        },
        pk="id",
        not_null={"channel", "platform", "text", "created_at"},
        defaults={"attempts": 0},
    )
    db.table("notices").create_index(["platform", "claimed_until"])


@MIGRATIONS()
def m015_one_file_per_platform_upload(db: Database) -> None:
    """An upload a platform names (a Slack file, a Discord attachment, a file attached to a vector store) is
    at most one file of a knowledge base, whichever process or event brings it: a unique index on
    (channel, platform_file_id) where there is one, so a second delivery finds the first file's row
    (core/knowledge/base.py writes it before fetching the bytes). And the process that added a file
    (``owner``), so that a process starting up fails only the half-indexed files of processes that are gone.

    Rows that broke the rule (deliveries that raced, before this migration) are merged first: the
    best of each set stays (completed, then being indexed, then failed; the newest of equals), the
    others go with their chunks, embeddings and, when no file has them any more, their bytes.
    """
    extra = db.execute(
        "SELECT id, sha256 FROM (SELECT id, sha256, row_number() OVER (PARTITION BY channel, platform_file_id"
        " ORDER BY CASE status WHEN 'completed' THEN 0 WHEN 'in_progress' THEN 1 ELSE 2 END, rowid DESC) AS n"
        " FROM files WHERE platform_file_id IS NOT NULL) WHERE n > 1"
    ).fetchall()
    for file_id, sha256 in extra:
        db.execute("DELETE FROM embeddings WHERE chunk_id IN (SELECT id FROM chunks WHERE file_id = ?)", [file_id])
        db.execute("DELETE FROM chunks WHERE file_id = ?", [file_id])
        db.execute("DELETE FROM files WHERE id = ?", [file_id])
        db.execute(
            "DELETE FROM file_contents WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM files WHERE sha256 = ?)"
            " AND NOT EXISTS (SELECT 1 FROM api_files WHERE sha256 = ?)",
            [sha256, sha256, sha256],
        )
    db.execute("DROP INDEX IF EXISTS idx_files_channel_platform_file_id")  # m003's, not unique: replaced
    db.execute(
        "CREATE UNIQUE INDEX files_platform_file ON files (channel, platform_file_id)"
        " WHERE platform_file_id IS NOT NULL"
    )
    db.table("files").add_column("owner", str)  # the process that added it (store.process_id)


@MIGRATIONS()
def m016_run_replies(db: Database) -> None:
    """The platform's id of the message that shows a run's answer (a Slack message's ts, a Discord message
    id), so that a process taking the run over from one that died can replace its half-written answer."""
    db.table("runs").add_column("reply_ref", str)


@MIGRATIONS()
def m017_deliveries(db: Database) -> None:
    """Platform deliveries that store nothing of their own (a Slack slash command), seen by any process,
    until a platform could no longer send them again: the key is a digest, never the delivery itself."""
    db.execute("CREATE TABLE deliveries (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)")
    db.execute("CREATE INDEX deliveries_expiry ON deliveries (expires_at)")


@MIGRATIONS()
def m018_channel_scopes(db: Database) -> None:
    """Conversations inside a channel (a Slack thread, a Discord thread; see core/models.py): ``scope``
    names the channel whose knowledge base, assistant, policy and budgets a conversation shares. NULL:
    the conversation is its own scope, as every channel stored before this migration stays.

    What a conversation spends counts towards its scope's channel budget: m011's triggers that keep
    ``budget_spent`` are made again with the scope, not the conversation, as the channel subject."""
    db.table("channels").add_column("scope", str)
    db.execute("CREATE INDEX channels_scope ON channels (scope) WHERE scope IS NOT NULL")
    for event, old_input, old_output in (
        ("INSERT", "0", "0"),
        ("UPDATE OF input_tokens, output_tokens", "OLD.input_tokens", "OLD.output_tokens"),
    ):
        name = "runs_spent_" + event.split()[0].lower()
        db.execute(f"DROP TRIGGER {name}")
        db.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON runs"
            f" WHEN COALESCE(NEW.input_tokens, 0) != COALESCE({old_input}, 0)"
            f" OR COALESCE(NEW.output_tokens, 0) != COALESCE({old_output}, 0) BEGIN"
            " INSERT INTO budget_spent (scope, subject, period, period_start, model, input_tokens, output_tokens)"
            " SELECT who.scope, who.subject, span.period, span.start, COALESCE(NEW.model, 'unknown model'),"
            f" COALESCE(NEW.input_tokens, 0) - COALESCE({old_input}, 0),"
            f" COALESCE(NEW.output_tokens, 0) - COALESCE({old_output}, 0)"
            " FROM (SELECT 'channel' AS scope,"
            "  COALESCE((SELECT c.scope FROM channels c WHERE c.key = NEW.channel), NEW.channel) AS subject"
            "  UNION ALL SELECT 'user', json_extract(NEW.actor, '$.key')"
            "  WHERE COALESCE(json_extract(NEW.actor, '$.key'), '') != '') AS who,"
            " (SELECT 'day' AS period, CAST(strftime('%s', NEW.created_at, 'unixepoch', 'start of day') AS INTEGER)"
            "  AS start UNION ALL"
            "  SELECT 'month', CAST(strftime('%s', NEW.created_at, 'unixepoch', 'start of month') AS INTEGER)) AS span"
            " WHERE true ON CONFLICT (scope, subject, period, period_start, model) DO UPDATE SET"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens;"
            " END"
        )


@MIGRATIONS()
def m019_installations(db: Database) -> None:
    """Apps installed into many workspaces (Slack's OAuth install): one row per app and workspace, its bot's
    token and ids as JSON in ``data``. ``enterprise`` and ``workspace`` are '' where the platform has none (an
    organisation-wide install). And the one-time ``state`` values of install flows in progress, until used or
    expired, so that any process behind the app can finish a flow another began."""
    db.execute(
        "CREATE TABLE installations (platform TEXT NOT NULL, app TEXT NOT NULL, enterprise TEXT NOT NULL,"
        " workspace TEXT NOT NULL, data TEXT NOT NULL, installed_at REAL NOT NULL,"
        " PRIMARY KEY (platform, app, enterprise, workspace))"
    )
    db.execute("CREATE TABLE install_states (state TEXT PRIMARY KEY, expires_at REAL NOT NULL)")
    db.execute("CREATE INDEX install_states_expiry ON install_states (expires_at)")


@MIGRATIONS()
def m020_images(db: Database) -> None:
    """Images shared with the bot in chat (core/images.py): kept with their message until the run that
    answers it has ended, the only run shown them. Later runs see a short placeholder instead, so when the
    run ends the message's token count drops by what each image cost beyond its placeholder
    (``saved_tokens``) and the bytes go; deleting the message (retention, an API client) deletes its images.
    """
    db.table("images").create(
        {
            "id": str,  # img_...
            "message_id": int,
            "position": int,  # its place among the message's images
            "name": str,
            "mime": str,  # as its bytes say: image/png, image/jpeg, image/gif or image/webp
            "bytes": int,
            "data": bytes,
            "saved_tokens": int,
            "created_at": float,
        },
        pk="id",
        not_null={"message_id", "name", "mime", "data", "saved_tokens"},
    )
    db.table("images").create_index(["message_id"])
    ended = "('completed', 'failed', 'cancelled', 'expired')"
    db.execute(
        "CREATE TRIGGER images_after_run AFTER UPDATE OF status ON runs"
        f" WHEN NEW.status IN {ended} AND OLD.status NOT IN {ended}"
        " AND EXISTS (SELECT 1 FROM images WHERE message_id = NEW.trigger_message_id) BEGIN"
        " UPDATE messages SET tokens = MAX(tokens - (SELECT SUM(saved_tokens) FROM images"
        "  WHERE message_id = NEW.trigger_message_id), 0) WHERE id = NEW.trigger_message_id;"
        " DELETE FROM images WHERE message_id = NEW.trigger_message_id;"
        " END"
    )
    db.execute(
        "CREATE TRIGGER images_with_message AFTER DELETE ON messages"
        " BEGIN DELETE FROM images WHERE message_id = OLD.id; END"
    )


@MIGRATIONS()
def m021_reasoning_effort(db: Database) -> None:
    """An API assistant's ``reasoning_effort`` (null: the model's own), passed to its runs' model calls."""
    db.table("assistants").add_column("reasoning_effort", str)


@MIGRATIONS()
def m022_run_feedback(db: Database) -> None:
    """Feedback on answers (core/feedback.py): one vote, ``up`` or ``down``, per person per run, replaced when
    they vote again (``voted_at``: their latest). Votes go with their run when retention deletes it."""
    db.execute(
        "CREATE TABLE run_feedback ("
        " run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
        " voter TEXT NOT NULL,"  # the person's user key (slack:U123)
        " vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),"
        " voted_at REAL NOT NULL,"
        " PRIMARY KEY (run_id, voter))"
    )
    db.execute("CREATE INDEX run_feedback_voted_at ON run_feedback (voted_at)")


@MIGRATIONS()
def m023_tool_call_steps(db: Database) -> None:
    """The tool calls of one model response make one run step, as the old API grouped them: each call keeps
    its row, and ``step_id`` names the row of the step's first call (null: a call that is a step of its own,
    as every call was before); ``call_index`` is the call's place in its step. ``details``: what a built-in
    tool's call shows beyond its output (core/tool_details.py), as JSON."""
    db.table("run_steps").add_column("step_id", str)
    db.table("run_steps").add_column("call_index", int)
    db.table("run_steps").add_column("details", str)
    db.table("run_steps").create_index(["run_id", "step_id"])


@MIGRATIONS()
def m024_code_interpreter_files(db: Database) -> None:
    """Files in and out of the code interpreter, and message attachments, as the Assistants API had them.

    A file the code interpreter wrote during an API run is an ``api_files`` row of purpose
    ``assistants_output``, owned by the run's key, naming the run and the tool call that wrote it
    (null for uploads). A message keeps the ``attachments`` its client sent (JSON list of
    ``{"file_id", "tools"}``), and an answer the images the code made before it (``output_images``:
    JSON list of file ids, shown as ``image_file`` parts ahead of its text).
    """
    api_files = db.table("api_files")
    api_files.add_column("run_id", str)
    api_files.add_column("call_id", str)
    api_files.create_index(["run_id"])
    db.table("messages").add_column("attachments", str)
    db.table("messages").add_column("output_images", str)


@MIGRATIONS()
def m025_multilingual_search(db: Database) -> None:
    """Full-text indexes that find words in any language, in place of the English-only ``chunks_fts``.

    A chunk's ``search_text`` is its text with runs of Chinese, Japanese or Korean written as
    space-separated bigrams (null: the text has none, and ``text`` is indexed); ``stemming`` is
    ``english`` for a chunk that reads as English or as no language (core/store/fulltext.py), null for
    the rest. English chunks go into ``chunks_search`` (Porter-stemmed, as before), the others into
    ``chunks_search_plain`` (no stemming: Porter knows only English). Triggers keep both in step with
    the chunks table; existing chunks are indexed anew here. Measured in BENCHMARKS.md.
    """
    from core.store.fulltext import index_text, is_english

    chunks = db.table("chunks")
    chunks.add_column("search_text", str)
    chunks.add_column("stemming", str)
    updates = [
        (index_text(text or ""), "english" if is_english(text or "") else None, chunk_id)
        for chunk_id, text in db.execute("SELECT id, text FROM chunks").fetchall()
    ]
    db.conn.executemany("UPDATE chunks SET search_text = ?, stemming = ? WHERE id = ?", updates)
    chunks.disable_fts()
    for table, tokenizer, which in (
        ("chunks_search", "porter unicode61 remove_diacritics 2", "stemming = 'english'"),
        ("chunks_search_plain", "unicode61 remove_diacritics 2", "stemming IS NOT 'english'"),
    ):
        content = f"{table}_content"
        db.execute(f"CREATE VIEW {content} AS SELECT id, coalesce(search_text, text) AS text FROM chunks WHERE {which}")
        db.execute(
            f"CREATE VIRTUAL TABLE {table} USING fts5(text, content='{content}', content_rowid='id',"
            f" tokenize='{tokenizer}')"
        )
        new = f"SELECT new.id, coalesce(new.search_text, new.text) WHERE new.{which}"
        old = f"SELECT 'delete', old.id, coalesce(old.search_text, old.text) WHERE old.{which}"
        db.execute(
            f"CREATE TRIGGER {table}_ai AFTER INSERT ON chunks BEGIN INSERT INTO {table} (rowid, text) {new}; END"
        )
        db.execute(
            f"CREATE TRIGGER {table}_ad AFTER DELETE ON chunks BEGIN"
            f" INSERT INTO {table} ({table}, rowid, text) {old}; END"
        )
        db.execute(
            f"CREATE TRIGGER {table}_au AFTER UPDATE ON chunks BEGIN"
            f" INSERT INTO {table} ({table}, rowid, text) {old};"
            f" INSERT INTO {table} (rowid, text) {new}; END"
        )
        db.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")


@MIGRATIONS()
def m026_postgres_full_text(db: Database) -> None:
    """Nothing to do: PostgreSQL's full-text column and index (core/store/postgres/migrations.py). SQLite's full
    text is FTS5: ``chunks_search`` and ``chunks_search_plain`` (m025, in place of m003's ``chunks_fts``)."""


@MIGRATIONS()
def m027_notice_runs(db: Database) -> None:
    """The run a notice tells of (``run_id``; null for a notice about the channel), so that the process that
    delivers it shows it where that run's answer was going: in place of a half-written answer, or in the
    question's thread (core/takeover.py)."""
    db.table("notices").add_column("run_id", str)
