/**
 * The node-addon-api shim in process: it converts types and maps engine
 * errnos to Errors with stable codes, and nothing else.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { isNativeError, loadNative, type NativeEngine } from '../../lib/engine/native';

function thrown(fn: () => unknown): Error & { code?: string; errno?: number } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string; errno?: number };
  }
  throw new Error('expected a throw');
}

test('engine lifecycle, errno codes and messages, ECLOSED after destroy', () => {
  const native = loadNative();
  const lines: [number, string][] = [];
  const e: NativeEngine = new native.Engine({ reactors: 2, pollUs: 0, log: (l, m) => lines.push([l, m]) });
  try {
    assert.is(e.reactorCount(), 2);
    assert.type(e.reactorCpuUs(), 'number');
    e.mallocCreate('A', 64, 4096);
    const dup = thrown(() => e.mallocCreate('A', 64, 4096));
    assert.ok(isNativeError(dup));
    assert.is(dup.code, 'EEXIST');
    assert.is(dup.errno, -17);
    assert.match(dup.message, "'A'");
    const missing = thrown(() => e.bdevDelete('nope'));
    assert.is(missing.code, 'ENOENT');
    const listMissing = thrown(() => e.bdevList('nope'));
    assert.is(listMissing.code, 'ENOENT');
    assert.match(listMissing.message, "'nope'");
    e.errorCreate('A');
    const busy = thrown(() => e.bdevDelete('A'));
    assert.is(busy.code, 'EBUSY');
    const list = e.bdevList();
    assert.equal(list.map((b) => [b.name, b.module, b.createMethod, b.claimedBy !== null]), [
      ['A', 'malloc', 'bdev_malloc_create', true],
      ['EE_A', 'error', 'bdev_error_create', false],
    ]);
    assert.equal(JSON.parse(list[0]!.configJson!), { name: 'A', num_blocks: 64, block_size: 4096 });
    assert.equal(e.bdevIoTypes('A'), { read: true, write: true, flush: true, unmap: true, write_zeroes: true });
    e.errorInject('EE_A', { ioMask: 1 << native.ioTypes.read, kind: native.errorKinds.failure, count: 1, offsetBlocks: 0, numBlocks: 0 });
    // Type guards: wrong JS types and strings with NUL are TypeErrors with code EINVAL, the engine is not called.
    const nul = thrown(() => e.mallocCreate('x\u0000y', 64, 4096));
    assert.instance(nul, TypeError);
    assert.is(nul.code, 'EINVAL');
    const neg = thrown(() => e.mallocCreate('B', -1, 4096));
    assert.is(neg.code, 'EINVAL');
    assert.equal(e.nbdExportList(), []);
    e.bdevDelete('EE_A');
    e.bdevDelete('A');
  } finally {
    e.destroy();
  }
  const closed = thrown(() => e.bdevList());
  assert.is(closed.code, 'ECLOSED');
  e.destroy(); // idempotent
});

test('bad engine options are TypeErrors with code EINVAL', () => {
  const native = loadNative();
  const err = thrown(() => new native.Engine({ reactors: -1 }));
  assert.is(err.code, 'EINVAL');
});

test.run();
