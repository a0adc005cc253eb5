#!/usr/bin/env bash
# Scan infra/ with checkov's Bicep framework: its built-in checks plus the project's
# own (infra/checks/, IDs CKV_CKPT_*). Exits non-zero when:
#   - any check fails (a check the templates cannot satisfy must be skipped inline,
#     inside the resource's braces: `// checkov:skip=CKV_AZURE_NN: reason`),
#   - a skip comment has no written reason,
#   - checkov could not parse a .bicep file (checkov itself exits 0 then),
#   - a project check file does not import, or checkov scanned nothing.
#
# checkov: $CHECKOV if set, else `checkov` on PATH, else a throwaway venv at
# $CHECKOV_VENV (default: ${TMPDIR:-/tmp}/checkpointers-checkov-venv) with the pinned
# version below installed from PyPI. Nothing else is downloaded: the Prisma Cloud
# mapping download and the PyPI update check are switched off.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

CHECKOV_VERSION="3.3.30"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [[ -n "${CHECKOV:-}" ]]; then
  checkov_bin="$CHECKOV"
elif command -v checkov >/dev/null 2>&1; then
  checkov_bin="$(command -v checkov)"
else
  venv="${CHECKOV_VENV:-${TMPDIR:-/tmp}/checkpointers-checkov-venv}"
  if [[ ! -x "$venv/bin/checkov" ]]; then
    echo "scan.sh: installing checkov==$CHECKOV_VERSION into $venv" >&2
    log="$(mktemp)"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "scan.sh: could not install checkov" >&2
      exit 1
    fi
    rm -f "$log"
  fi
  checkov_bin="$venv/bin/checkov"
fi

# 1. Every inline skip carries a reason of at least a few words.
bad_skips="$(grep -rnE 'checkov:skip=' --include='*.bicep' infra \
  | grep -vE 'checkov:skip=[A-Za-z0-9_]+: *[^ ].{15,}' || true)"
if [[ -n "$bad_skips" ]]; then
  echo "scan.sh: checkov skip without a written reason:" >&2
  echo "$bad_skips" >&2
  exit 1
fi

# 2. The project's own checks (infra/checks/) must import: checkov only logs a
#    broken external check and goes on without it.
checkov_python="$(dirname "$checkov_bin")/python"
[[ -x "$checkov_python" ]] || checkov_python=python3
if ! "$checkov_python" -c 'import runpy, sys; runpy.run_path(sys.argv[1])' \
    infra/checks/checkpointers_invariants.py; then
  echo "scan.sh: infra/checks/checkpointers_invariants.py does not import" >&2
  exit 1
fi

# 3. The scan itself (CLI output for people, JSON summary for the gates below).
out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE
set +e
"$checkov_bin" -d infra --framework bicep --quiet --compact --skip-download \
  --external-checks-dir infra/checks --output cli --output json --output-file-path "$out_dir" >/dev/null
checkov_rc=$?
set -e
cat "$out_dir/results_cli.txt"

# 4. Gates checkov does not apply itself (parsing errors exit 0; an empty scan too).
python3 - "$out_dir/results_json.json" "$checkov_rc" <<'PY'
import json
import sys

path, checkov_rc = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    report = json.load(f)
reports = report if isinstance(report, list) else [report]
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}
for r in reports:
    for key in summary:
        summary[key] += int(r.get("summary", {}).get(key, 0))
print(
    "scan.sh: passed={passed} failed={failed} skipped={skipped} "
    "parsing_errors={parsing_errors} resources={resource_count}".format(**summary)
)
problems = []
if checkov_rc != 0:
    problems.append(f"checkov exited {checkov_rc}")
if summary["failed"]:
    problems.append(f"{summary['failed']} failed check(s)")
if summary["parsing_errors"]:
    problems.append(f"{summary['parsing_errors']} file(s) checkov could not parse")
if summary["resource_count"] == 0 or summary["passed"] == 0:
    problems.append("checkov scanned no resources")
if problems:
    print("scan.sh: FAILED: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print("scan.sh: OK")
PY
