#!/bin/sh
# Resumability with nothing but curl: initialize an MCP session, call a slow
# tool, cut its stream after a few events, and resume it with Last-Event-ID.
# The tool runs on while nobody listens; the resume replays what was missed,
# then streams the rest live, up to the result.
#
#   examples/walkthrough.sh [URL [TOOL [ARGUMENTS]]]
#
# Each can also come from the environment: MCP_URL, MCP_TOOL and
# MCP_TOOL_ARGUMENTS (a JSON object); so can CUT_AFTER_EVENTS (events read
# before the cut, the priming event included) and RESUME_AFTER_SECONDS. The
# defaults call the countdown of `mcp-resume demo` at its default address,
# with its own defaults (20 steps, half a second apart).
set -eu

URL=${1:-${MCP_URL:-http://127.0.0.1:8080/mcp}}
TOOL=${2:-${MCP_TOOL:-countdown}}
ARGUMENTS=${3:-${MCP_TOOL_ARGUMENTS:-'{}'}}
CUT_AFTER_EVENTS=${CUT_AFTER_EVENTS:-4}
RESUME_AFTER_SECONDS=${RESUME_AFTER_SECONDS:-2}

VERSION=2025-11-25
JSON='Content-Type: application/json'
ACCEPT='Accept: application/json, text/event-stream'

# 1. Initialize, and keep the session id the server mints.
SESSION=$(curl -sS -o /dev/null -D - "$URL" -H "$JSON" -H "$ACCEPT" \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'"$VERSION"'","capabilities":{},"clientInfo":{"name":"walkthrough","version":"1.0"}}}' \
  | awk 'tolower($1) == "mcp-session-id:" { print $2 }' | tr -d '\r')
if [ -z "$SESSION" ]; then
  echo "no Mcp-Session-Id from $URL: is an MCP server running there?" >&2
  exit 1
fi
echo "# session $SESSION"

# 2. Finish the handshake (202 Accepted, no body).
curl -sS "$URL" -H "$JSON" -H "$ACCEPT" \
  -H "Mcp-Session-Id: $SESSION" -H "MCP-Protocol-Version: $VERSION" \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

# 3. Call the tool, show its stream, and cut it after CUT_AFTER_EVENTS events,
#    keeping the last id seen (curl notices the cut at the next event). A
#    message without a "method" is the tool's answer: the stream ends with it.
echo "# calling $TOOL $ARGUMENTS; cutting the stream after $CUT_AFTER_EVENTS events"
exec 3>&1
LAST_ID=$(curl -sN "$URL" -H "$JSON" -H "$ACCEPT" \
  -H "Mcp-Session-Id: $SESSION" -H "MCP-Protocol-Version: $VERSION" \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"'"$TOOL"'","arguments":'"$ARGUMENTS"',"_meta":{"progressToken":"walkthrough"}}}' \
  | {
    events=0
    last=
    answered=
    while IFS= read -r line; do
      printf '%s\n' "$line" >&3
      case $line in
        'id: '*) last=${line#id: } events=$((events + 1)) ;;
        'data: {'*'"method"'*) ;;
        'data: {'*) answered=yes ;;
        '') if [ -z "$answered" ] && [ "$events" -ge "$CUT_AFTER_EVENTS" ]; then
              printf '%s' "$last"
              break
            fi ;;
      esac
    done
  })
if [ -z "$LAST_ID" ]; then
  echo "# the tool answered before the cut: nothing to resume"
  exit 0
fi

# 4. Resume: what was missed at once, then the rest live, up to the result.
echo "# cut after $LAST_ID; the tool runs on. Resuming in $RESUME_AFTER_SECONDS s with Last-Event-ID: $LAST_ID"
sleep "$RESUME_AFTER_SECONDS"
curl -sSN "$URL" -H 'Accept: text/event-stream' \
  -H "Mcp-Session-Id: $SESSION" -H "MCP-Protocol-Version: $VERSION" \
  -H "Last-Event-ID: $LAST_ID"

# 5. End the session.
curl -sS -o /dev/null -X DELETE "$URL" \
  -H "Mcp-Session-Id: $SESSION" -H "MCP-Protocol-Version: $VERSION"
echo "# session ended"
