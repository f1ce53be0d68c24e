import { GeometryIndex } from "./capacity.js";
import { descriptorOf } from "./descriptors/index.js";
import { referencesOf } from "./kinds.js";
import { didYouMean } from "./suggest.js";
import { formatSize } from "./units.js";
import { type Diagnostic, type Resource, type SourceLocation } from "./types.js";

/** Finds where a resource (path []) or one of its spec fields was written. */
export type Locate = (address: string, path: (string | number)[]) => SourceLocation;

/** Per-DPU view used by the rules. */
interface DpuView {
  dpu?: Resource & { kind: "dpu" };
  bdevs: Map<string, Resource>;
  functions: Resource[];
}

/**
 * Rules that span resources: references exist and stay on one DPU, no cycles, one
 * consumer per bdev, RAID members agree and are large enough, functions fit the DPU's
 * PF/VF limits and are unique, bdev names are unique per DPU. Returns every problem.
 * `invalidNames` ("dpu/name") were declared but failed their own checks; references to
 * them are not reported again.
 */
export function crossCheck(
  resources: readonly Resource[],
  locate: Locate,
  invalidNames: ReadonlySet<string> = new Set(),
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const report = (r: Resource, code: string, path: (string | number)[], field: string | undefined, message: string) =>
    out.push({
      code,
      address: r.address,
      ...(field !== undefined ? { field } : {}),
      message,
      source: locate(r.address, path),
    });

  const views = new Map<string, DpuView>();
  const view = (dpu: string) => {
    let v = views.get(dpu);
    if (!v) {
      v = { bdevs: new Map(), functions: [] };
      views.set(dpu, v);
    }
    return v;
  };
  for (const r of resources) {
    const v = view(r.dpu);
    if (r.kind === "dpu") v.dpu = r;
    else if (r.kind === "function") v.functions.push(r);
    else {
      const clash = v.bdevs.get(r.name);
      if (clash) {
        report(
          r,
          "duplicate-name",
          [],
          undefined,
          `bdev name '${r.name}' is already used by ${clash.address}; bdev names are unique per DPU across kinds`,
        );
      } else v.bdevs.set(r.name, r);
    }
  }

  for (const [dpu, v] of views) {
    if (!v.dpu) {
      const first = [...v.bdevs.values(), ...v.functions][0]!;
      report(
        first,
        "unknown-dpu",
        [],
        undefined,
        `DPU '${dpu}' is not declared${didYouMean(
          dpu,
          [...views.keys()].filter((d) => views.get(d)!.dpu),
        )}`,
      );
    }
  }

  // References: exist, same DPU, one consumer each.
  const consumerOf = new Map<string, Resource>();
  for (const r of resources) {
    for (const ref of referencesOf(r.kind, r.spec)) {
      const target = view(r.dpu).bdevs.get(ref.target);
      if (!target) {
        if (invalidNames.has(`${r.dpu}/${ref.target}`)) continue; // already reported where it was declared
        const elsewhere = [...views.entries()].find(([d, v]) => d !== r.dpu && v.bdevs.has(ref.target));
        const msg = elsewhere
          ? `refers to '${ref.target}', which is on DPU '${elsewhere[0]}'; a reference must stay on its own DPU ('${r.dpu}')`
          : `refers to '${ref.target}', but DPU '${r.dpu}' has no bdev of that name${didYouMean(ref.target, [...view(r.dpu).bdevs.keys()])}`;
        report(r, elsewhere ? "cross-dpu-reference" : "dangling-reference", ref.path, ref.field, msg);
        continue;
      }
      const key = target.address;
      const prior = consumerOf.get(key);
      if (prior && prior.address !== r.address) {
        report(
          r,
          "multiple-consumers",
          ref.path,
          ref.field,
          `bdev '${ref.target}' is already used by ${prior.address}; a bdev has at most one consumer`,
        );
      } else consumerOf.set(key, r);
    }
  }

  for (const v of views.values()) {
    checkBackings(v, report);
    checkCycles(v, report);
    checkRaidGeometry(v, report);
    checkFunctions(v, report);
  }
  return out;
}

type Report = (
  r: Resource,
  code: string,
  path: (string | number)[],
  field: string | undefined,
  message: string,
) => void;

/**
 * One file or device backs one bdev: two file bdevs on one path would write over each
 * other's data. Paths are compared as written (normalized); plan time compares what
 * they resolve to on the DPU as well.
 */
function checkBackings(v: DpuView, report: Report): void {
  const byPath = new Map<string, Resource>();
  for (const r of v.bdevs.values()) {
    if (r.kind !== "file") continue;
    const prior = byPath.get(r.spec.path);
    if (prior) {
      report(
        r,
        "shared-backing",
        ["path"],
        "path",
        `path '${r.spec.path}' is already the backing of ${prior.address}; one file or device backs one bdev: give ${r.address} its own`,
      );
    } else byPath.set(r.spec.path, r);
  }
}

function checkCycles(v: DpuView, report: Report): void {
  const state = new Map<string, 1 | 2>(); // 1 on stack, 2 done
  for (const start of v.bdevs.keys()) {
    if (state.has(start)) continue;
    // Iterative DFS so a long chain cannot overflow the stack.
    const stack: { name: string; next: number; refs: string[] }[] = [];
    const push = (name: string) => {
      state.set(name, 1);
      const r = v.bdevs.get(name)!;
      stack.push({
        name,
        next: 0,
        refs: referencesOf(r.kind, r.spec)
          .map((x) => x.target)
          .filter((t) => v.bdevs.has(t)),
      });
    };
    push(start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next >= top.refs.length) {
        state.set(top.name, 2);
        stack.pop();
        continue;
      }
      const child = top.refs[top.next++]!;
      const s = state.get(child);
      if (s === 1) {
        const names = stack.map((f) => f.name);
        const cycle = [...names.slice(names.indexOf(child)), child];
        const r = v.bdevs.get(top.name)!;
        const ref = referencesOf(r.kind, r.spec).find((x) => x.target === child)!;
        report(r, "reference-cycle", ref.path, ref.field, `reference cycle: ${cycle.join(" -> ")}`);
      } else if (s === undefined) push(child);
    }
  }
}

function checkRaidGeometry(v: DpuView, report: Report): void {
  const geometry = new GeometryIndex(v.bdevs);
  for (const r of v.bdevs.values()) {
    if (r.kind !== "raid") continue;
    const members = r.spec.members.map((m, i) => ({ m, i, g: geometry.of(m) }));
    const known = members.filter((x) => x.g !== undefined);
    const first = known[0];
    for (const x of known) {
      if (x.g!.blockSize !== first!.g!.blockSize) {
        report(
          r,
          "block-size-mismatch",
          ["members", x.i],
          `members[${x.i}]`,
          `member '${x.m}' has block size ${x.g!.blockSize} but '${first!.m}' has ${first!.g!.blockSize}; RAID members must agree on block size`,
        );
      }
      if (x.g!.size < r.spec.stripSize) {
        report(
          r,
          "member-too-small",
          ["members", x.i],
          `members[${x.i}]`,
          `member '${x.m}' (${formatSize(x.g!.size)}) is smaller than one strip (stripSize ${formatSize(r.spec.stripSize)})`,
        );
      }
    }
  }
}

function checkFunctions(v: DpuView, report: Report): void {
  const dpu = v.dpu?.spec;
  const slots = new Map<string, Resource>();
  for (const f of v.functions) {
    if (f.kind !== "function") continue;
    const s = f.spec;
    if (dpu) {
      if (s.pf >= dpu.pfs) {
        report(
          f,
          "pf-out-of-range",
          ["pf"],
          "pf",
          `pf ${s.pf} is out of range: DPU '${f.dpu}' has pfs: ${dpu.pfs}, so pf must be 0..${dpu.pfs - 1}`,
        );
      }
      if (s.vf !== undefined && s.vf >= dpu.vfsPerPf) {
        report(
          f,
          "vf-out-of-range",
          ["vf"],
          "vf",
          dpu.vfsPerPf === 0
            ? `vf ${s.vf} is out of range: DPU '${f.dpu}' has vfsPerPf: 0 (no VFs); omit vf to use the PF itself`
            : `vf ${s.vf} is out of range: DPU '${f.dpu}' has vfsPerPf: ${dpu.vfsPerPf}, so vf must be 0..${dpu.vfsPerPf - 1}`,
        );
      }
      // What the DPU's backend can never do, as its kind descriptor says (the rest is checked at plan time).
      for (const n of descriptorOf(f.kind).backends[dpu.backend].create(f.spec)) {
        if (n.validate)
          report(
            f,
            "not-supported",
            n.field !== undefined ? [n.field] : [],
            n.field,
            `${n.what} is not available on the ${dpu.backend} backend: ${n.fix}`,
          );
      }
    }
    // A vhost-user-blk socket is named after its function, beside the NBD sockets
    // `nbd-<export>.sock` of the same tenant (lib/backends/native.ts nbdSocketOf): one of
    // those names would make the apply fail half-way on a socket that is taken.
    if (s.transport === "vhost-user-blk" && /^nbd-pf\d+(vf\d+)?\.sock$/.test(f.name)) {
      report(
        f,
        "reserved-name",
        [],
        undefined,
        `a vhost-user-blk function's socket is named after it, and '${f.name}' is the socket name of an NBD function in the same directory; rename the function`,
      );
    }
    const slot = s.vf === undefined ? `pf${s.pf}` : `pf${s.pf}/vf${s.vf}`;
    const prior = slots.get(slot);
    if (prior) {
      report(
        f,
        "duplicate-function",
        s.vf === undefined ? ["pf"] : ["vf"],
        s.vf === undefined ? "pf" : "vf",
        `${slot} is already taken by ${prior.address}; each (pf, vf) carries one function`,
      );
    } else slots.set(slot, f);
  }
}
