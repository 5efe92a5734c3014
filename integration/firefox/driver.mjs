// driver.mjs drives a headless Firefox over WebDriver BiDi for ssogate's
// browser tests. integration/harness/firefox.go starts it as
//
//	node driver.mjs <firefox binary> <prefs as JSON>
//
// and talks to it in JSON lines: each line on stdin is a command
// {"id", "op", ...}, each line on stdout the answer {"id", "ok", "value"} or
// {"id", "ok": false, "error"}. The first line out is {"id": 0, "ok": true}
// once Firefox runs. Commands:
//
//	goto   {url}                 load url in the first tab, wait for "load"
//	eval   {url, js}             evaluate the expression js in the first frame,
//	                             of any tab, whose URL starts with url
//	click  {url, selector}       click (real input events) on selector in that frame
//	frames {}                    the URLs of every tab and frame, for messages
//	close  {}                    end Firefox and exit
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const [exe, prefsJSON] = process.argv.slice(2);
const send = (msg) => process.stdout.write(JSON.stringify(msg) + '\n');

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: exe,
  headless: true,
  acceptInsecureCerts: true,
  extraPrefsFirefox: JSON.parse(prefsJSON || '{}'),
  protocolTimeout: 20000,
});
const [first] = await browser.pages();
const tab = first ?? (await browser.newPage());

// allFrames lists every frame of every tab, top-level ones first.
async function allFrames() {
  const out = [];
  for (const p of await browser.pages()) {
    out.push(...p.frames());
  }
  return out;
}

async function frameAt(prefix) {
  for (const f of await allFrames()) {
    if (f.url().startsWith(prefix)) return f;
  }
  throw new Error(`no frame whose URL starts with ${prefix}`);
}

const ops = {
  async goto({ url }) {
    await tab.goto(url, { waitUntil: 'load', timeout: 15000 });
    return tab.url();
  },
  async eval({ url, js }) {
    return await (await frameAt(url)).evaluate(js);
  },
  async click({ url, selector }) {
    await (await frameAt(url)).click(selector);
    return true;
  },
  async frames() {
    return (await allFrames()).map((f) => f.url());
  },
  async close() {
    await browser.close();
    return true;
  },
};

send({ id: 0, ok: true, value: await browser.version() });

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let cmd;
  try {
    cmd = JSON.parse(line);
    const op = ops[cmd.op];
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    send({ id: cmd.id, ok: true, value: (await op(cmd)) ?? null });
    if (cmd.op === 'close') break;
  } catch (err) {
    send({ id: cmd?.id ?? -1, ok: false, error: String(err?.message ?? err) });
  }
}
await browser.close().catch(() => {});
process.exit(0);
