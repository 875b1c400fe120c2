#!/usr/bin/env bash
# The crash test with many kills: replays a generated log with 100 ms checkpoints, SIGKILLs it
# at seeded random moments KILLS times (default 200), resumes until done, and checks the output
# against an uninterrupted run (byte for byte) and an independent reference.
#
#   scripts/crash-test.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_CRASH_KILLS="${1:-200}"
exec cargo test --release --test crash killed_and_resumed -- --nocapture
