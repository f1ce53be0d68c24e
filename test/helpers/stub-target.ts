/**
 * The engine's JSON-RPC as the agent's backend unit tests stand it in: `bdev_get_bdevs`
 * answers the given bdevs, every other inventory query (bdev_get_*, *_get_exports) an
 * empty list, and every change `true`. The methods called are recorded in order.
 */
export function stubTarget(bdevs: unknown[] = []): {
  rpc: { call<T>(method: string): Promise<T> };
  calls: string[];
} {
  const calls: string[] = [];
  const rpc = {
    call: async <T>(method: string): Promise<T> => {
      calls.push(method);
      const inventory = method.startsWith("bdev_get") || method.endsWith("get_exports");
      return (method === "bdev_get_bdevs" ? bdevs : inventory ? [] : true) as T;
    },
  };
  return { rpc, calls };
}
