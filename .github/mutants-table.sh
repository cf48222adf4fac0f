#!/usr/bin/env bash
# The README's mutation table from one or more cargo-mutants output directories
# (each holding caught.txt, missed.txt, unviable.txt, timeout.txt):
#   .github/mutants-table.sh mutants.out [more/mutants.out ...]
# Kill rate: (caught + timeout) / (caught + missed + timeout); a timeout is a
# mutant that made a wait or a retry loop never end, which the suites stop.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 MUTANTS_OUT_DIR..." >&2; exit 2; }
for d in "$@"; do
  [ -f "$d/caught.txt" ] || { echo "$d: not a cargo-mutants output directory" >&2; exit 2; }
  for k in caught missed unviable timeout; do
    sed "s/:.*//; s/\$/ $k/" "$d/$k.txt" 2>/dev/null || true
  done
done | awk '
  { n[$1 " " $2]++; f[$1] = 1 }
  END {
    print "| file | caught | missed | unviable | timeout | kill rate |"
    print "|---|---:|---:|---:|---:|---:|"
    for (x in f) {
      c = n[x " caught"] + 0; m = n[x " missed"] + 0
      u = n[x " unviable"] + 0; t = n[x " timeout"] + 0
      C += c; M += m; U += u; T += t
      v = c + m + t
      rows[x] = sprintf("| %s | %d | %d | %d | %d | %s |", x, c, m, u, t, v ? sprintf("%.0f %%", 100 * (c + t) / v) : "-")
    }
    k = 0; for (x in rows) keys[++k] = x
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (keys[j] < keys[i]) { s = keys[i]; keys[i] = keys[j]; keys[j] = s }
    for (i = 1; i <= k; i++) print rows[keys[i]]
    V = C + M + T
    printf "| all | %d | %d | %d | %d | %s |\n", C, M, U, T, V ? sprintf("%.0f %%", 100 * (C + T) / V) : "-"
  }'
