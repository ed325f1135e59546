#!/bin/sh
# Entrypoint of the claude-mem image.
#
#   entrypoint.sh [MODE] [ARGS...]
#
# MODE is the first argument when it is one of the modes below, otherwise
# CLAUDE_MEM_CONTAINER_MODE, otherwise "server". ARGS go to the command the mode runs.
#
#   server   claude-mem serve --host 0.0.0.0 ARGS   (HTTP API on CLAUDE_MEM_SERVER_PORT, 37877)
#   worker   claude-mem worker ARGS                 (generation worker, no port)
#   migrate  claude-mem migrate ARGS                (create or upgrade the schema, then exit)
#   shell    ARGS, or an interactive shell          (operator tooling: claude-mem teams ...)
#
# With CLAUDE_MEM_MIGRATE_ON_START=1 (or true/yes/on), server and worker run
# `claude-mem migrate` first and stop if it fails. Convenient for a single container;
# with several replicas prefer a one-shot migrate container (see docker-compose.yml).
set -eu

usage() {
    cat >&2 <<'USAGE'
usage: entrypoint.sh [server|worker|migrate|shell] [ARGS...]

  server   run the HTTP server (claude-mem serve --host 0.0.0.0), the default
  worker   run the generation worker (claude-mem worker)
  migrate  create or upgrade the database schema, then exit
  shell    run ARGS (e.g. claude-mem teams list) or an interactive shell

The mode is the first argument, else CLAUDE_MEM_CONTAINER_MODE, else "server".
Set CLAUDE_MEM_MIGRATE_ON_START=1 to migrate before server or worker starts.
USAGE
}

is_true() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

mode="${CLAUDE_MEM_CONTAINER_MODE:-server}"
if [ "$#" -gt 0 ]; then
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        -*) ;; # options for the mode chosen by the environment
        *)
            mode="$1"
            shift
            ;;
    esac
fi

migrate_first() {
    if is_true "${CLAUDE_MEM_MIGRATE_ON_START:-}"; then
        echo "claude-mem entrypoint: CLAUDE_MEM_MIGRATE_ON_START is set, migrating first" >&2
        status=0
        claude-mem migrate || status=$?
        if [ "$status" -ne 0 ]; then
            echo "claude-mem entrypoint: migration failed (exit $status); not starting $mode" >&2
            exit "$status"
        fi
    fi
}

case "$mode" in
    server)
        migrate_first
        exec claude-mem serve --host "${CLAUDE_MEM_SERVER_HOST:-0.0.0.0}" "$@"
        ;;
    worker)
        migrate_first
        exec claude-mem worker "$@"
        ;;
    migrate)
        exec claude-mem migrate "$@"
        ;;
    shell)
        if [ "$#" -gt 0 ]; then
            exec "$@"
        fi
        if command -v bash >/dev/null 2>&1; then
            exec bash
        fi
        exec sh
        ;;
    help)
        usage
        exit 0
        ;;
    *)
        echo "claude-mem entrypoint: unknown mode '$mode'" >&2
        usage
        exit 2
        ;;
esac
