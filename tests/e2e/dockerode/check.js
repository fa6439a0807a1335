// dockerode against a pydockerd, as an IDE extension or a dashboard drives it.
// Run by tests/e2e/test_dockerode.py: node check.js SOCKET IMAGE PREFIX
// Prints one "ok NAME" or "FAIL NAME: why" line per check; exits 1 when one failed.
'use strict';

const Docker = require('dockerode');
const { PassThrough } = require('stream');

const [socketPath, image, prefix] = process.argv.slice(2);
const docker = new Docker({ socketPath });
const made = [];

function collect(stream) {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  return () => Buffer.concat(chunks).toString();
}

async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function create(name, opts) {
  const c = await docker.createContainer({ Image: image, name: `${prefix}-${name}`, ...opts });
  made.push(c);
  return c;
}

// A one-file tar made by hand (ustar header + data + padding + end blocks).
function tarOf(name, data) {
  const h = Buffer.alloc(512);
  const put = (s, off, len) => h.write(s, off, len, 'latin1');
  put(name, 0, 100);
  put('0000644\0', 100, 8);
  put('0000000\0', 108, 8);
  put('0000000\0', 116, 8);
  put(data.length.toString(8).padStart(11, '0') + '\0', 124, 12);
  put('14510000000\0', 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad, Buffer.alloc(1024)]);
}

const checks = {
  // container.attach({stream, stdin}) without hijack: dockerode writes stdin on the same connection.
  async attach_stdin() {
    const c = await create('attach', { Cmd: ['cat'], OpenStdin: true, StdinOnce: false });
    const stream = await c.attach({ stream: true, stdin: true, stdout: true, stderr: true });
    const out = new PassThrough();
    const text = collect(out);
    docker.modem.demuxStream(stream, out, new PassThrough());
    await c.start();
    stream.write('hello from dockerode\n');
    await until('the echo of stdin', () => text().includes('hello from dockerode'));
    stream.write('second line\n');
    await until('the second echo', () => text().includes('second line'));
    await c.kill();
  },
  // exec.start({stdin: true}) without hijack: the JSON body, then stdin on the connection.
  async exec_stdin() {
    const c = await create('exec', { Cmd: ['sleep', '300'] });
    await c.start();
    const ex = await c.exec({ Cmd: ['sh', '-c', 'read l; echo got:$l; echo err >&2'], AttachStdin: true,
      AttachStdout: true, AttachStderr: true });
    const stream = await ex.start({ stdin: true });
    const out = new PassThrough();
    const err = new PassThrough();
    const text = collect(out);
    const etext = collect(err);
    docker.modem.demuxStream(stream, out, err);
    stream.write('abc\n');
    await until('the exec output', () => text().includes('got:abc') && etext().includes('err'));
    const info = await until('the exec exit code', async () => {
      const i = await ex.inspect();
      return i.Running === false && i;
    });
    if (info.ExitCode !== 0) throw new Error(`exit code ${info.ExitCode}`);
  },
  // exec.start({}) : output only, as a plain response body.
  async exec_output() {
    const c = await create('exec2', { Cmd: ['sleep', '300'] });
    await c.start();
    const ex = await c.exec({ Cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], AttachStdout: true,
      AttachStderr: true });
    const stream = await ex.start({});
    const out = new PassThrough();
    const err = new PassThrough();
    const text = collect(out);
    const etext = collect(err);
    docker.modem.demuxStream(stream, out, err);
    await new Promise((r) => stream.on('end', r));
    if (text() !== 'out\n' || etext() !== 'err\n') throw new Error(`got ${JSON.stringify([text(), etext()])}`);
    const info = await ex.inspect();
    if (info.ExitCode !== 3) throw new Error(`exit code ${info.ExitCode}`);
  },
  async logs() {
    const c = await create('logs', { Cmd: ['sh', '-c', 'echo one; echo two >&2'] });
    await c.start();
    await c.wait();
    const buf = await c.logs({ stdout: true, stderr: true });
    const out = new PassThrough();
    const err = new PassThrough();
    const text = collect(out);
    const etext = collect(err);
    const src = new PassThrough();
    docker.modem.demuxStream(src, out, err);
    src.end(buf);
    await new Promise((r) => setImmediate(r));
    if (text() !== 'one\n' || etext() !== 'two\n') throw new Error(`got ${JSON.stringify([text(), etext()])}`);
  },
  // docker stop as dashboards watch it: kill (15), die, stop; kill (9) too when the timeout forces it.
  async events_stop() {
    const c = await create('events', { Cmd: ['sleep', '300'] });
    await c.start();
    const events = await docker.getEvents({ filters: { container: [c.id] } });
    const seen = [];
    events.on('data', (d) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        const e = JSON.parse(line);
        seen.push(e.Action === 'kill' ? `kill:${e.Actor.Attributes.signal}` : e.Action);
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    await c.stop({ t: 1 }); // sleep as PID 1 ignores SIGTERM: the timeout forces SIGKILL
    await until('the stop event', () => seen.includes('stop'));
    events.destroy();
    const want = ['kill:15', 'kill:9', 'die', 'stop'];
    if (JSON.stringify(seen) !== JSON.stringify(want)) throw new Error(`events ${seen.join(',')}`);
  },
  async archives() {
    const c = await create('archive', { Cmd: ['sleep', '300'] });
    await c.start();
    await c.putArchive(tarOf('hello.txt', Buffer.from('archive content\n')), { path: '/tmp' });
    const stream = await c.getArchive({ path: '/tmp/hello.txt' });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const tar = Buffer.concat(chunks);
    if (tar.subarray(0, 9).toString() !== 'hello.txt') throw new Error('archive header names another file');
    if (!tar.subarray(512, 528).toString().startsWith('archive content')) throw new Error('archive content differs');
    const info = await c.infoArchive({ path: '/tmp/hello.txt' });
    if (!info) throw new Error('no stat of the file');
  },
  // docker.run: create, attach (hijacked), start, wait, as its README shows.
  async run_helper() {
    const out = new PassThrough();
    const text = collect(out);
    const [data, c] = await docker.run(image, ['sh', '-c', 'echo run-ok; exit 4'], out,
      { name: `${prefix}-run` });
    made.push(c);
    if (data.StatusCode !== 4) throw new Error(`status ${data.StatusCode}`);
    if (!text().includes('run-ok')) throw new Error(`output ${JSON.stringify(text())}`);
  },
};

(async () => {
  let failed = 0;
  for (const [name, fn] of Object.entries(checks)) {
    try {
      await fn();
      console.log(`ok ${name}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${e && e.message}`);
    }
  }
  for (const c of made) {
    await c.remove({ force: true }).catch(() => {});
  }
  process.exit(failed ? 1 : 0);
})();
