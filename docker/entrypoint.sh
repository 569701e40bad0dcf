#!/bin/sh
# Container entrypoint.
#   serve (default): apply database migrations, then run the service on 0.0.0.0:8080
#                    with $MINYI_WORKERS worker processes (default 2).
#   anything else:   run as given, e.g. `minyi outbox list` or `sh`.
set -eu

# compose passes unset host variables through as empty strings; an empty value would
# override config/minyi.toml (e.g. blank the callback token), so drop empty ones.
for var in MINYI_WECHAT_TOKEN MINYI_WECHAT_APPID MINYI_WECHAT_SECRET MINYI_WECHAT_AES_KEY; do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        unset "$var"
    fi
done

if [ "${1:-serve}" = "serve" ]; then
    if [ "$#" -gt 0 ]; then
        shift
    fi
    if [ -n "${MINYI_WECHAT_SECRET:-}" ] && [ -z "${MINYI_WECHAT_TOKEN:-}" ]; then
        echo "minyi: WARNING: MINYI_WECHAT_SECRET is set but MINYI_WECHAT_TOKEN is not;" \
             "the callback uses the development token from config/minyi.toml" >&2
    fi
    minyi migrate
    exec minyi serve --host 0.0.0.0 --port 8080 --workers "${MINYI_WORKERS:-2}" "$@"
fi

exec "$@"
