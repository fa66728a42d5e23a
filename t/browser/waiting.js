// Drives Debian's Chromium (headless, through playwright-core) against the
// demo configuration and a configuration with the module's built-in pages;
// called by t/80-browser.t, which starts nginx and Redis, makes the
// assertions and prints the screenshots' paths.
//
//   node t/browser/waiting.js CONFIG.json
//
// CONFIG: { chromium, profile, outdir, deadline_ms,
//           demo: { base, redis_port, product, product_title, sold_out_product,
//                   retry_product, fill, admit_within_ms },
//           builtin: { base, waiting, sold_out, retry, fill } }
//
// Prints one JSON object on its last line of output: what each page showed
// (status, lang, position, ETA, progress bar, refresh, layout shift, the
// lowest text contrast, overflow at 390 px) and the screenshots taken.
// Exits 0 when it ran to the end (the assertions are the test's), 2 when it
// could not.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require('playwright-core');

const out = { pages: {}, screenshots: [], external: [], navigations: [], errors: [] };
const started = Date.now();
const log = (...a) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);

function finish(code) {
    out.elapsed_ms = Date.now() - started;
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(code);
}

const guard = setTimeout(() => {
    out.errors.push(`deadline of ${cfg.deadline_ms} ms reached`);
    finish(2);
}, cfg.deadline_ms);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A new visitor each (no cookie): tickets ahead of the browser.
async function fill(base, pathname, n) {
    for (let i = 0; i < n; i++) {
        const r = await fetch(base + pathname, { headers: { Accept: 'application/json' } });
        await r.arrayBuffer();
    }
}

// One Redis command on a fresh connection: CLIENT PAUSE makes Redis stop
// answering for a while, so the module's call times out.
function redis(port, args) {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let buf = '';
        s.setTimeout(2000, () => { s.destroy(); reject(new Error('redis timeout')); });
        s.on('error', reject);
        s.on('data', (d) => { buf += d; if (buf.includes('\r\n')) { s.end(); resolve(buf.trim()); } });
        s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
    });
}

// What a person would check on the page, measured in the page.
function measure() {
    const parse = (c) => {
        const m = c.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)/);
        return m ? [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]] : [0, 0, 0, 1];
    };
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const blend = (top, bottom) => {
        const a = top[3];
        return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
    };
    const background = (el) => {
        const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const bg = parse(getComputedStyle(e).backgroundColor);
            if (bg[3] > 0) layers.push(bg);
            if (bg[3] >= 1) break;
        }
        let c = [255, 255, 255, 1];
        for (let i = layers.length - 1; i >= 0; i--) c = blend(layers[i], c);
        return c;
    };
    const texts = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!n.textContent.trim() || !el || !el.getClientRects().length) continue;
        const st = getComputedStyle(el);
        if (st.visibility === 'hidden' || st.display === 'none' || +st.opacity === 0) continue;
        if (el.closest('progress')) continue;   // fallback text, not shown
        const bg = background(el);
        const fg = blend(parse(st.color), bg);
        const l1 = lum(fg), l2 = lum(bg);
        const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
        const size = parseFloat(st.fontSize), bold = +st.fontWeight >= 700;
        const large = size >= 24 || (size >= 18.66 && bold);
        texts.push({ text: n.textContent.trim().slice(0, 40), ratio: +ratio.toFixed(2),
                     need: large ? 3 : 4.5, fg: st.color, size });
    }
    texts.sort((a, b) => (a.ratio / a.need) - (b.ratio / b.need));
    const prog = document.querySelector('progress, [role=progressbar]');
    const meta = document.querySelector('meta[http-equiv="refresh" i]');
    const raw = document.body.innerText;
    const text = raw.replace(/\s+/g, ' ').trim();
    const pos = text.match(/place in line:?\s*(\d+)/i);
    const eta = raw.match(/estimated wait:?\s*((?:about|less than|unknown)[^.\n]*)/i);
    return {
        url: location.href,
        title: document.title,
        lang: document.documentElement.getAttribute('lang'),
        viewport_meta: !!document.querySelector('meta[name=viewport]'),
        h1: (document.querySelector('h1') || {}).textContent || null,
        text: text.slice(0, 400),
        position: pos ? +pos[1] : null,
        eta_text: eta ? eta[1].trim() : null,
        progress: prog ? { tag: prog.tagName.toLowerCase(), value: prog.value ?? prog.getAttribute('aria-valuenow'),
                           max: prog.max ?? null,
                           labelled: !!(prog.labels && prog.labels.length) || prog.hasAttribute('aria-label') }
                       : null,
        meta_refresh: meta ? meta.getAttribute('content') : null,
        cls: +(window.__cls || 0).toFixed(4),
        contrast_worst: texts.slice(0, 3),
        contrast_fail: texts.filter((t) => t.ratio < t.need).length,
        scroll_width: document.documentElement.scrollWidth,
        client_width: document.documentElement.clientWidth,
        zones: document.querySelectorAll('section.zone').length,
        charts: document.querySelectorAll('section.zone svg').length,
    };
}

async function shot(page, name) {
    const file = path.join(cfg.outdir, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    out.screenshots.push(file);
    return file;
}

// Record a page: measured at desktop width, screenshot, then at 390 px
// (a phone): overflow and a second screenshot; back to desktop.
// page.evaluate, again if the page reloaded itself meanwhile (the retry
// page does after 2 s)
async function evaluate(page, fn) {
    for (let i = 0; ; i++) {
        try {
            return await page.evaluate(fn);
        } catch (e) {
            if (i >= 2 || !/context was destroyed|navigat/i.test(String(e))) throw e;
            await page.waitForLoadState('load');
        }
    }
}

async function record(page, name, response, extra) {
    await page.waitForLoadState('load');
    await sleep(300);    // let late layout shifts show
    const m = await evaluate(page, measure);
    m.status = response ? response.status() : null;
    if (response) {
        const h = response.headers();
        m.headers = { refresh: h.refresh || null, 'retry-after': h['retry-after'] || null,
                      'cache-control': h['cache-control'] || null, 'content-type': h['content-type'] || null };
    }
    m.shot = await shot(page, `${name}-desktop`);
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(150);
    const mobile = await evaluate(page, () => ({
        title: document.title,
        scroll_width: document.documentElement.scrollWidth,
        client_width: document.documentElement.clientWidth,
    }));
    m.mobile = mobile;
    m.mobile_shot = await shot(page, `${name}-390px`);
    await page.setViewportSize({ width: 1280, height: 800 });
    Object.assign(m, extra || {});
    out.pages[name] = m;
    log(`${name}: ${m.status} "${m.title}"`);
    return m;
}

// Navigations the page makes by itself: every main-frame document response.
function watchNavigations(page) {
    page.on('response', async (r) => {
        const req = r.request();
        if (!req.isNavigationRequest() || r.frame() !== page.mainFrame()) return;
        const rec = { t: Date.now() - started, url: r.url(), status: r.status(),
                      refresh: r.headers().refresh || null };
        out.navigations.push(rec);
        try {
            const body = await r.text();
            const title = body.match(/<title>([^<]*)<\/title>/i);
            const pos = body.replace(/<[^>]+>/g, ' ').match(/place in line:?\s*(\d+)/i);
            rec.title = title ? title[1] : null;
            rec.position = pos ? +pos[1] : null;
        } catch (e) { /* the page went on before its body was read */ }
    });
}

// Wait, without touching the page, until its title contains `want`.
async function waitForTitle(page, want, ms) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        try {
            if ((await page.title()).includes(want)) return true;
        } catch (e) { /* navigating */ }
        await sleep(200);
    }
    return false;
}

async function main() {
    fs.mkdirSync(cfg.outdir, { recursive: true });
    const context = await chromium.launchPersistentContext(cfg.profile, {
        executablePath: cfg.chromium,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1280, height: 800 },
        timeout: 20000,
    });
    context.setDefaultTimeout(10000);
    const allowed = [new URL(cfg.demo.base).origin, new URL(cfg.builtin.base).origin];
    context.on('request', (r) => {
        const u = r.url();
        if (u.startsWith('data:') || u.startsWith('about:')) return;
        if (!allowed.includes(new URL(u).origin)) out.external.push(u);
    });
    await context.addInitScript(() => {
        window.__cls = 0;
        try {
            new PerformanceObserver((l) => {
                for (const e of l.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
            }).observe({ type: 'layout-shift', buffered: true });
        } catch (e) { /* no layout-shift entries in this browser */ }
    });
    const page = context.pages()[0] || await context.newPage();
    out.browser = context.browser() ? context.browser().version() : null;

    // ---- the demo: a new visitor waits, the page refreshes itself, the
    // same browser lands on the product page
    const d = cfg.demo;
    await fill(d.base, '/drop/', d.fill);
    watchNavigations(page);
    const first = await page.goto(d.base + d.product);
    const w = await record(page, 'demo-waiting', first);
    log(`waiting: position ${w.position}, eta "${w.eta_text}", refresh ${w.headers && w.headers.refresh}`);
    const gotoAt = Date.now();
    out.admitted = await waitForTitle(page, d.product_title, d.admit_within_ms);
    out.admitted_after_ms = Date.now() - gotoAt;
    const nav = out.navigations.filter((n) => n.url === d.base + d.product);
    await record(page, 'demo-product', null, { status: nav.length ? nav[nav.length - 1].status : null });

    // sold out: the product's stock is 0 (the test set it); a real click
    let [resp] = await Promise.all([
        page.waitForNavigation(),
        page.click('form.buy button[type=submit]'),
    ]);
    await record(page, 'demo-sold-out', resp);

    // retry: Redis stops answering for 1.5 s; the module gives up after its
    // 250 ms timeout and answers 503 with the retry page, which tries again
    // by itself and then shows the cart
    await page.goto(d.base + d.retry_product);
    out.redis_pause = await redis(d.redis_port, ['CLIENT', 'PAUSE', '1500']);
    [resp] = await Promise.all([
        page.waitForNavigation(),
        page.click('form.buy button[type=submit]'),
    ]);
    await record(page, 'demo-retry', resp);
    out.retry_recovered = await waitForTitle(page, 'cart', 12000);
    if (out.retry_recovered) await record(page, 'demo-cart-after-retry', null);

    // the dashboard: a browser asking for /flashsale_status
    resp = await page.goto(d.base + '/flashsale_status');
    await page.waitForSelector('section.zone', { timeout: 8000 }).catch(() => {});
    await record(page, 'dashboard', resp);

    // ---- the module's built-in pages
    const b = cfg.builtin;
    await fill(b.base, b.waiting, b.fill);
    resp = await page.goto(b.base + b.waiting);
    await record(page, 'builtin-waiting', resp);
    resp = await page.goto(b.base + b.sold_out);
    await record(page, 'builtin-sold-out', resp);
    resp = await page.goto(b.base + b.retry);
    await record(page, 'builtin-retry', resp);

    await context.close();
    clearTimeout(guard);
    finish(0);
}

main().catch((e) => {
    out.errors.push(String(e && e.stack || e));
    finish(2);
});
