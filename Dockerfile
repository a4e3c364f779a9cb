# Threadline in a container: `docker build -t threadline .`, then `docker compose up` (compose.yaml).
#
# One image runs every entry point (`python -m bots` by default; `python -m bots.slack` and the
# others as the command). The database lives under /data, a volume. The code interpreter runs model
# code under bubblewrap, which needs user namespaces: Docker's default seccomp profile refuses them,
# so the interpreter stays off (the log says "the code interpreter is off: a sandbox could not be
# started ...") unless the container runs with `security_opt: [seccomp=unconfined]` (and, on hosts
# whose AppArmor confines containers, `apparmor=unconfined`), as compose.yaml explains.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

# The bot's packages, then the sandbox's own Python with the data stack, each from its lock file.
COPY requirements/runtime.lock requirements/sandbox.lock /opt/threadline/requirements/
RUN python -m venv /opt/threadline/venv \
    && /opt/threadline/venv/bin/pip install "$(grep '^pip==' /opt/threadline/requirements/runtime.lock)" \
    && /opt/threadline/venv/bin/pip install -r /opt/threadline/requirements/runtime.lock \
    && python -m venv /opt/threadline/sandbox \
    && /opt/threadline/sandbox/bin/pip install -r /opt/threadline/requirements/sandbox.lock

# tiktoken's encoding, fetched now: a container that starts offline counts tokens exactly at once.
ENV TIKTOKEN_CACHE_DIR=/opt/threadline/tiktoken
RUN /opt/threadline/venv/bin/python -c "import tiktoken; tiktoken.get_encoding('o200k_base')"

WORKDIR /app
COPY core ./core
COPY bots ./bots

RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home threadline \
    && mkdir -p /data \
    && chown threadline:threadline /data
USER threadline

ENV PATH=/opt/threadline/venv/bin:$PATH \
    PYTHONPATH=/app \
    THREADLINE_DB=/data/threadline.db \
    THREADLINE_SANDBOX_PYTHON=/opt/threadline/sandbox/bin/python \
    THREADLINE_HTTP_HOST=0.0.0.0 \
    PORT=3000
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

ENTRYPOINT ["python", "-m"]
CMD ["bots"]
