// A frontend's view of kensa-gql through graphql-ws, the client Apollo and urql use.
// Usage: node client.mjs <ws-url> <api-key> <flow|bad-key|dispose> [video-uuid]
// Prints one JSON object per line on stdout; the Python test reads them.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import readline from 'node:readline';

const [url, key, mode, uuid] = process.argv.slice(2);
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

// Like a browser: send an Origin header (same origin as the server).
const origin = url.replace(/^ws/, 'http').replace(/\/graphql$/, '');
class BrowserLikeWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { origin });
  }
}

function client(options = {}) {
  return createClient({
    url,
    webSocketImpl: BrowserLikeWebSocket,
    connectionParams: { Authorization: `Bearer ${key}` },
    lazy: true,
    retryAttempts: 0,
    ...options,
  });
}

async function one(c, query, variables) {
  for await (const result of c.iterate({ query, variables })) {
    return result;
  }
  throw new Error('no result');
}

const VIDEO_STATUS = 'subscription($uuid: ID!) { videoStatus(uuid: $uuid) { id status progress videoUrl } }';

async function flow() {
  let acked = 0;
  const c = client({ lazy: false, on: { connected: () => { acked += 1; } } });
  const models = await one(c, '{ models { id durations } }');
  const me = await one(c, '{ me { email credits { available frozen used } } }');
  const generated = await one(c,
    'mutation($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid status creditsUsed } }',
    { input: { prompt: 'a fox in the snow', model: 'sora-2', duration: 4, aspectRatio: '16:9' } });
  const events = [];
  for await (const result of c.iterate({ query: VIDEO_STATUS,
                                         variables: { uuid: generated.data.generateVideo.uuid } })) {
    events.push(result);
  }
  const after = await one(c, '{ me { credits { available frozen used } } }');
  const foreign = await one(c, VIDEO_STATUS, { uuid: '00000000-0000-4000-8000-000000000000' })
    .catch((errors) => ({ errors }));
  print({ acked, models, me, generated, events, after, foreign });
  await c.dispose();
}

async function badKey() {
  const c = client();
  try {
    await one(c, '{ me { email } }');
    print({ unexpected: 'succeeded' });
  } catch (error) {
    print({ closeCode: error.code ?? null, reason: error.reason ?? null });
  }
  await c.dispose();
}

async function dispose() {
  const c = client();
  const input = readline.createInterface({ input: process.stdin });
  const lines = input[Symbol.asyncIterator]();
  await new Promise((resolve, reject) => {
    let first = true;
    const unsubscribe = c.subscribe({ query: VIDEO_STATUS, variables: { uuid } }, {
      next: async (result) => {
        if (!first) return;
        first = false;
        print({ snapshot: result });
        await lines.next();          // the test has checked the server now holds a watcher
        unsubscribe();
        resolve();
      },
      error: reject,
      complete: () => {},
    });
  });
  await c.dispose();
  input.close();
  print({ disposed: true });
}

const modes = { flow, 'bad-key': badKey, dispose };
modes[mode]().catch((error) => {
  print({ failed: String(error?.message ?? error), code: error?.code ?? null });
  process.exitCode = 1;
});
