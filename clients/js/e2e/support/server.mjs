// Starts and stops a real `tether serve` for the end-to-end tests: loopback
// only, a free port (or a given one, to restart on the same address), and
// only the process started here is ever killed, by its pid.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** clients/js */
export const clientDir = path.resolve(here, '../..');
/** the repository root */
export const repoRoot = path.resolve(clientDir, '../..');

/** The server binary: $TETHER_BIN, else target/debug/tether of this repository. */
export function tetherBin() {
  const bin = process.env.TETHER_BIN
    ? path.resolve(repoRoot, process.env.TETHER_BIN)
    : path.join(repoRoot, 'target/debug/tether');
  if (!existsSync(bin)) throw new Error(`no tether binary at ${bin}: run \`cargo build -p tether\` or set TETHER_BIN`);
  return bin;
}

/** Short timings, so that the whole suite runs in seconds. */
export const FAST = ['--ping-interval', '1s', '--pong-timeout', '1s', '--long-poll-timeout', '2s'];

const READY_TIMEOUT = 15_000;

/**
 * Starts `tether serve --listen 127.0.0.1:PORT` (PORT 0: a free one) with
 * `args`; resolves once it printed `tether listening on ADDR`.
 */
export async function startServer({ port = 0, args = FAST } = {}) {
  const bin = tetherBin();
  // Restarting on the port a killed server held: a bind may fail for a moment.
  for (let tries = 0; ; tries++) {
    try {
      return await spawnServer(bin, port, args);
    } catch (e) {
      if (port === 0 || tries >= 20 || !/address|in use|bind/i.test(String(e.message))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function spawnServer(bin, port, args) {
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`tether did not start within ${READY_TIMEOUT} ms:\n${output}`));
    }, READY_TIMEOUT);
    const onData = (chunk) => {
      output += chunk;
      if (output.length > 100_000) output = output.slice(-50_000);
      const m = /tether listening on (\S+)/.exec(output);
      if (!m || server.addr) return;
      clearTimeout(timer);
      server.addr = m[1];
      server.port = Number(m[1].split(':').pop());
      server.url = `http://${m[1]}`;
      resolve(server);
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', onData);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('exit', (code, signal) => {
      server.exited = true;
      if (server.addr) return;
      clearTimeout(timer);
      reject(new Error(`tether exited (${code ?? signal}) before it was ready:\n${output}`));
    });
    const server = {
      proc,
      pid: proc.pid,
      addr: '',
      port: 0,
      url: '',
      exited: false,
      output: () => output,
      /** Kills this server (SIGTERM drains; SIGKILL is a crash) and waits for its exit. */
      stop: (signal = 'SIGTERM') => stopProcess(proc, signal),
    };
  });
}

/** Kills `proc` (only it, by its pid) and waits for it to exit; SIGKILL after 5 s. */
export function stopProcess(proc, signal = 'SIGTERM') {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const hard = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), 5_000);
    proc.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    try {
      process.kill(proc.pid, signal);
    } catch {
      clearTimeout(hard);
      resolve();
    }
  });
}
