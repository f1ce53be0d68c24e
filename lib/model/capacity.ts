import type { Resource } from "./types.js";

/** Size and block size a bdev presents to its consumer. */
export interface Geometry {
  size: number;
  blockSize: number;
}

/**
 * Computes what each bdev presents upward. RAID capacity ignores the few blocks that
 * on-member metadata (superblocks) takes, so it is an upper bound; compress presents its
 * base's capacity as logical size. Returns undefined for unknown names and cycles.
 */
export class GeometryIndex {
  private readonly cache = new Map<string, Geometry | undefined>();
  private readonly visiting = new Set<string>();

  /** @param bdevs bdev resources of one DPU, by name. */
  constructor(private readonly bdevs: ReadonlyMap<string, Resource>) {}

  of(name: string): Geometry | undefined {
    if (this.cache.has(name)) return this.cache.get(name);
    if (this.visiting.has(name)) return undefined;
    this.visiting.add(name);
    const g = this.compute(name);
    this.visiting.delete(name);
    this.cache.set(name, g);
    return g;
  }

  private compute(name: string): Geometry | undefined {
    const r = this.bdevs.get(name);
    if (!r) return undefined;
    switch (r.kind) {
      case "malloc":
      case "null":
      case "file":
        return { size: r.spec.size, blockSize: r.spec.blockSize };
      case "compress":
        return this.of(r.spec.base);
      case "raid": {
        const members = r.spec.members.map((m) => this.of(m));
        if (members.some((m) => m === undefined) || members.length === 0) return undefined;
        const strip = r.spec.stripSize;
        const smallest = Math.min(...members.map((m) => m!.size));
        const perMember = Math.floor(smallest / strip) * strip;
        const n = members.length;
        const dataMembers = { 0: n, 1: 1, 5: n - 1, 10: Math.floor(n / 2) }[r.spec.level];
        return { size: perMember * dataMembers, blockSize: members[0]!.blockSize };
      }
      default:
        return undefined;
    }
  }
}
