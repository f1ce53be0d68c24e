/** Edit distance counting an adjacent transposition as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidates closest to `word` (ties all kept, sorted), if close enough to be a plausible typo. */
export function nearest(word: string, candidates: readonly string[]): string[] {
  // A single letter is too short to guess from; short words allow one edit.
  const limit = word.length < 2 ? 0 : Math.max(1, Math.floor(word.length / 3));
  let best: string[] = [];
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (Math.abs(c.length - word.length) > limit) continue;
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [[c], d];
    else if (d === bestDistance) best.push(c);
  }
  return bestDistance <= limit && bestDistance > 0 ? [...new Set(best)].sort().slice(0, 3) : [];
}

/** " — did you mean 'x'?" (or "'x' or 'y'") or "" — appended to "unknown ..." messages. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const n = nearest(word, candidates);
  return n.length === 0 ? "" : ` — did you mean ${n.map((c) => `'${c}'`).join(" or ")}?`;
}
